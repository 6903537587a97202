import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


def _torch_state() -> dict:
    state = dict(torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_torch_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda')
    if (
        cuda is not None
        and torch.cuda.is_available()
        and len(cuda) == torch.cuda.device_count()
    ):
        torch.cuda.set_rng_state_all(cuda)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Makes ``--resume`` continue with the random numbers of a run that was
    never interrupted, and validation leave the random streams untouched.

    mmengine saves no random state in its checkpoints: on resume it seeds
    again and advances the training dataloader past the iterations already
    done. That replays the data exactly (the sampler has its own generator,
    dataloader workers are seeded from the seed and their id, and with
    ``num_workers=0`` the pipeline's draws from the process's numpy and
    Python generators are replayed in order), but the model's draws from
    torch's generator (dropout, for one) are not: after a resume they would
    restart from the seed. This hook

    - stores torch's CPU (and CUDA) generator state in each checkpoint's
      ``meta['random_state']`` and restores it before the first iteration
      after a resume, once the dataloader has been advanced;
    - saves every process-wide generator (torch, CUDA, numpy, Python)
      before validation and restores it afterwards, so that validating (a
      new dataloader iterator draws a seed from torch's generator; a noise
      distortion in the pipeline draws from numpy's) changes nothing in the
      training that follows. Without it, a checkpoint written at a
      validation iteration (before validation runs) would not hold the
      state that the uninterrupted run continues with.

    The numpy and Python states are deliberately not restored on resume:
    with ``num_workers=0`` the advanced dataloader has already replayed
    them, and restoring would set them back by one batch.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._resumed: Optional[tuple] = None
        self._before_val: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})['random_state'] = _torch_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Called for load_from too; applied at the next training iteration
        # (once the loop has advanced the dataloader) only if that is the
        # checkpoint's own iteration, i.e. when resuming.
        meta = checkpoint.get('meta', {})
        state = meta.get('random_state')
        self._resumed = None if state is None else (meta.get('iter'), state)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self._resumed is None:
            return
        step, state = self._resumed
        self._resumed = None
        if step == runner.iter:
            _set_torch_state(state)

    def before_val(self, runner) -> None:
        self._before_val = dict(
            _torch_state(),
            numpy=np.random.get_state(),
            python=random.getstate(),
        )

    def after_val(self, runner) -> None:
        if self._before_val is None:
            return
        _set_torch_state(self._before_val)
        np.random.set_state(self._before_val['numpy'])
        random.setstate(self._before_val['python'])
        self._before_val = None
