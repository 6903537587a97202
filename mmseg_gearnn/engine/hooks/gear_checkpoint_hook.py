import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ...utils.dist import unwrap_model


@HOOKS.register_module()
class GearCheckpointHook(Hook):
    """Writes the compact gears file (adaptors of every gear, no base) each
    time a checkpoint is saved, and once more as ``gears.pth`` after
    training. In a distributed run only rank 0 writes (every rank holds
    the same gears).

    The file is ``n_gears x adaptor`` bytes; load it into a
    :class:`GearNNSegmentor` built on the same base with ``gears_file=`` or
    ``model.load_gears(path)``. It records the sha256 of the base weights
    and, as the base's file, the run's ``load_from``: loading the gears
    onto other base weights is refused. When training starts it warns if
    the adaptor's selection file was scored on other base weights
    (:meth:`GearNNSegmentor.check_selection_base`).

    Args:
        out_dir (str, optional): folder for the files; the work dir if None.
        filename_tmpl (str): name of the per-checkpoint file.
    """

    priority = 'LOW'

    def __init__(self, out_dir=None, filename_tmpl='gears_iter_{}.pth'):
        self.out_dir = out_dir
        self.filename_tmpl = filename_tmpl

    @staticmethod
    def _model(runner):
        model = unwrap_model(runner.model)
        return model if hasattr(model, 'save_gears') else None

    def _write(self, runner, filename: str) -> None:
        model = self._model(runner)
        if model is None or not is_main_process():
            return
        path = osp.join(self.out_dir or runner.work_dir, filename)
        model.save_gears(path)
        runner.logger.info(
            f'gears of {model.gear_bank.num_gears - 1} '
            f'distorted levels saved to {path}'
        )

    def before_run(self, runner) -> None:
        model = self._model(runner)
        if model is not None and model.base_checkpoint is None:
            model.base_checkpoint = runner.cfg.get('load_from')

    def before_train(self, runner) -> None:
        # The base is loaded now: warn if the adaptor was selected on
        # other base weights (its tensors may not be the ones that matter).
        model = self._model(runner)
        if model is not None:
            model.check_selection_base()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        step = checkpoint.get('meta', {}).get('iter', runner.iter)
        self._write(runner, self.filename_tmpl.format(step))

    def after_train(self, runner) -> None:
        self._write(runner, 'gears.pth')
