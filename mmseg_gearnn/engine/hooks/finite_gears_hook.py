import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ...utils.dist import unwrap_model


@HOOKS.register_module()
class FiniteGearsHook(Hook):
    """Stops gear training as soon as an adaptor holds NaN or Inf.

    Runs before the checkpoint hook of the same iteration (higher
    priority), so the last checkpoint written is the last good one. The
    error names the gear, its (type, level) and the tensor.

    Args:
        interval (int): check every ``interval`` training iterations.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        model = unwrap_model(runner.model)
        if not hasattr(model, 'gear_bank'):
            return
        for gear in range(1, model.gear_bank.num_gears):
            for name, tensor in model.gear_bank.tensors(gear).items():
                if tensor.is_floating_point() and not bool(
                    torch.isfinite(tensor).all()
                ):
                    dtype, level = model.space.level_of(gear)
                    raise RuntimeError(
                        f'gear {gear} ({dtype} {level}) tensor {name} holds '
                        f'NaN or Inf after iteration {runner.iter + 1}; '
                        'training stopped, the last checkpoint in '
                        f'{runner.work_dir} is the last good one (lower the '
                        'learning rate or clip gradients)'
                    )
