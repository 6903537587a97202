from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class GearBNRecalibrationHook(Hook):
    """Re-estimates every gear's BN running statistics after the last
    training iteration, before the final checkpoint and validation.

    A gear trained on a few batches leaves its running statistics mostly
    at the clean base's (they move by the BN momentum per batch), while
    training normalised with the distorted batches' own statistics; see
    :meth:`GearNNSegmentor.recalibrate_bn`. Models without adapted BN
    layers are left alone.

    Args:
        batches_per_gear (int): training batches averaged per gear.
            Default: 4.
        max_batches (int, optional): stop after this many batches even if
            some gear got fewer (it is logged). Default: 10 batches per
            gear.
    """

    # Before GearCheckpointHook (LOW) and CheckpointHook (VERY_LOW).
    priority = 'NORMAL'

    def __init__(
        self, batches_per_gear: int = 4, max_batches: int = None
    ) -> None:
        if batches_per_gear < 1:
            raise ValueError(
                f'batches_per_gear must be >= 1, got {batches_per_gear}'
            )
        if max_batches is not None and max_batches < 1:
            raise ValueError(f'max_batches must be >= 1, got {max_batches}')
        self.batches_per_gear = batches_per_gear
        self.max_batches = max_batches

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        if not self.is_last_train_iter(runner):
            return
        model = (
            runner.model.module
            if is_model_wrapper(runner.model)
            else runner.model
        )
        if not getattr(model, 'has_adapted_bn', False):
            return
        num_gears = model.gear_bank.num_gears - 1
        limit = self.max_batches or 10 * self.batches_per_gear * num_gears
        # The training loop's own iterator: mmengine's InfiniteSampler
        # cannot be iterated afresh once an iterator was dropped.
        batches = getattr(runner.train_loop, 'dataloader_iterator', None)
        if batches is None:
            batches = iter(runner.train_dataloader)
        seen = model.recalibrate_bn(
            (b for _, b in zip(range(limit), batches)), self.batches_per_gear
        )
        short = [
            g
            for g in range(1, num_gears + 1)
            if seen.get(g, 0) < self.batches_per_gear
        ]
        print_log(
            f'BN statistics of {len(seen)} gear(s) re-estimated on '
            f'{self.batches_per_gear} batch(es) each'
            + (
                f'; gear(s) {short} got fewer (they keep what they have)'
                if short
                else ''
            ),
            logger='current',
        )
