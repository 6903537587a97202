from typing import Dict

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ...utils.console import ProgressBar, console_is_verbose


@HOOKS.register_module()
class ConsoleProgressHook(Hook):
    """A progress bar per training, validation and test run, on the main
    process, for a quiet console (see
    :func:`mmseg_gearnn.utils.console.quiet_console`).

    Training shows the loss beside the bar. Idle on a verbose console,
    where mmengine's ``LoggerHook`` lines show the progress.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        # One bar per mode: a validation runs while training's bar waits.
        self._bars: Dict[str, ProgressBar] = {}

    def _open(self, mode: str, total: int, initial: int = 0) -> None:
        self._close(mode)
        if is_main_process() and not console_is_verbose():
            self._bars[mode] = ProgressBar(total, mode, initial=initial)

    def _close(self, mode: str) -> None:
        bar = self._bars.pop(mode, None)
        if bar is not None:
            bar.close()

    def _advance(self, mode: str, outputs=None) -> None:
        bar = self._bars.get(mode)
        if bar is None:
            return
        loss = outputs.get('loss') if isinstance(outputs, dict) else None
        if loss is None:
            bar.update()
        else:
            # A tensor still in the graph: read its value only.
            loss = float(getattr(loss, 'detach', lambda: loss)())
            bar.update(loss=f'{loss:.3f}')

    def before_train(self, runner) -> None:
        self._open('train', runner.max_iters, initial=runner.iter)

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        self._advance('train', outputs)

    def after_train(self, runner) -> None:
        self._close('train')

    def before_val_epoch(self, runner) -> None:
        self._open('val', len(runner.val_dataloader))

    def after_val_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        self._advance('val')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._close('val')

    def before_test_epoch(self, runner) -> None:
        self._open('test', len(runner.test_dataloader))

    def after_test_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        self._advance('test')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._close('test')
