"""Finished stages kept on disk with the inputs they were computed from."""

import json
import os.path as osp
import time
from typing import Callable, Dict, Optional

from mmseg_gearnn.utils import atomic_write
from mmseg_gearnn.utils.console import say


def log(msg: str) -> None:
    say(f'[benchmark] {msg}')  # logged, and shown on a quiet console


class StageCache:
    """Results of finished stages, each in ``work_dir/<stage>/result.json``
    with the inputs it was computed from; a stage whose inputs changed is
    run again."""

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        # stage -> its own run time and whether this run reused it.
        self.stages: Dict[str, dict] = {}

    def record(self, stage: str, time_s: Optional[float], reused: bool):
        if self.stages.get(stage, {}).get('reused') is False:
            return  # run earlier in this run, then asked for again
        self.stages[stage] = dict(time_s=time_s, reused=reused)

    def run(self, stage: str, inputs: dict, fn: Callable[[str], dict]):
        # As JSON reads it back: tuples become lists.
        inputs = json.loads(json.dumps(inputs))
        stage_dir = osp.join(self.work_dir, stage)
        result_file = osp.join(stage_dir, 'result.json')
        if osp.isfile(result_file):
            with open(result_file, encoding='utf-8') as f:
                cached = json.load(f)
            if cached.get('inputs') == inputs:
                log(f'{stage}: reusing {result_file}')
                result = cached['result']
                self.record(stage, result.get('time_s'), reused=True)
                return result
        log(f'{stage}: running')
        start = time.time()
        result = fn(stage_dir)
        result['time_s'] = round(time.time() - start, 1)
        self.record(stage, result['time_s'], reused=False)
        atomic_write(
            result_file,
            json.dumps(dict(inputs=inputs, result=result), indent=2),
        )
        return result
