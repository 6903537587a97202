import json
import os.path as osp
from typing import Dict, Optional

from mmengine.dist import all_gather_object, is_main_process
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class SkippedFilesHook(Hook):
    """Reports the files that an evaluation skipped.

    The checked loading transforms with ``on_error='skip'`` record a bad
    file in ``results['skipped']`` (``dict(path, reason)``); with
    ``'skipped'`` in ``PackSegInputs``'s ``meta_keys`` it reaches each
    output's metainfo. After each validation or test epoch this hook logs
    every skipped file once (a sweep loads a file once per distortion
    level) and writes them to ``<work_dir>/<filename>``; an epoch without
    any writes ``[]``, so that the file always describes the last run.

    Args:
        filename (str): the report's name in the work dir.
    """

    priority = 'LOW'

    def __init__(self, filename: str = 'skipped_files.json') -> None:
        self.filename = filename
        self._skipped: Dict[str, dict] = {}

    def _collect(self, outputs) -> None:
        for sample in outputs or []:
            record = sample.metainfo.get('skipped')
            if record and record['path'] not in self._skipped:
                self._skipped[record['path']] = dict(
                    path=record['path'],
                    reason=record['reason'],
                    img_path=sample.metainfo.get('img_path'),
                )

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._collect(outputs)

    def after_test_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ):
        self._collect(outputs)

    def _report(self, runner, mode: str) -> Optional[list]:
        merged: Dict[str, dict] = {}
        for part in all_gather_object(self._skipped):
            merged.update(part)
        self._skipped = {}
        skipped = [merged[p] for p in sorted(merged)]
        if not is_main_process():
            return skipped
        from ...utils.io import atomic_write

        path = osp.join(runner.work_dir, self.filename)
        atomic_write(path, json.dumps(skipped, indent=2) + '\n')
        if skipped:
            lines = '\n'.join(f'  {s["path"]}: {s["reason"]}' for s in skipped)
            runner.logger.warning(
                f'{mode}: {len(skipped)} bad file(s) skipped (their '
                f'samples add nothing to the metrics), listed in {path}:\n'
                f'{lines}'
            )
        else:
            runner.logger.info(f'{mode}: no file skipped')
        return skipped

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._report(runner, 'val')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._report(runner, 'test')
