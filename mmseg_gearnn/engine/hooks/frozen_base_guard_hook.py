import hashlib
from typing import Dict, Optional

from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ...utils.dist import unwrap_model


def _digest(tensor) -> str:
    return hashlib.sha1(
        tensor.detach().cpu().contiguous().numpy().tobytes()
    ).hexdigest()


@HOOKS.register_module()
class FrozenBaseGuardHook(Hook):
    """Checks that gear training never changes the shared base.

    Before training it records a digest of every base tensor of a
    :class:`GearNNSegmentor` (parameters and buffers); every ``interval``
    iterations and after training it compares them and stops the run,
    naming the changed tensors, if any differs. It also checks that no base
    parameter requires gradients.

    Args:
        interval (int): check every ``interval`` training iterations.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 50) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval
        self._digests: Optional[Dict[str, str]] = None

    @staticmethod
    def _base(runner):
        model = unwrap_model(runner.model)
        if not hasattr(model, 'gear_bank'):
            return None, None
        return model, model.segmentor

    def before_train(self, runner) -> None:
        model, base = self._base(runner)
        if base is None:
            runner.logger.warning(
                'FrozenBaseGuardHook: the model is not a '
                'GearNNSegmentor; nothing to guard'
            )
            return
        model.check_base_frozen()
        self._digests = {n: _digest(t) for n, t in base.state_dict().items()}
        runner.logger.info(
            f'FrozenBaseGuardHook: guarding {len(self._digests)} base tensors'
        )

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        if self.every_n_train_iters(runner, self.interval):
            self.check(runner)

    def after_train(self, runner) -> None:
        self.check(runner)

    def check(self, runner) -> None:
        """Raises ``RuntimeError`` naming every base tensor that changed."""
        if self._digests is None:
            return
        model, base = self._base(runner)
        # Inference (a validation run) may have switched a gear in place.
        model.restore_base()
        model.check_base_frozen()
        changed = [
            n
            for n, t in base.state_dict().items()
            if _digest(t) != self._digests.get(n)
        ]
        if changed:
            raise RuntimeError(
                f'{len(changed)} base tensor(s) changed during gear training '
                f'(iteration {runner.iter + 1}): {changed[:10]}'
            )
