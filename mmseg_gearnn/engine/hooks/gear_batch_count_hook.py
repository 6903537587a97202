from typing import List, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ...models.adaptor_tensors import adaptor_size_text
from ...utils.dist import unwrap_model


@HOOKS.register_module()
class GearBatchCountHook(Hook):
    """Logs what each gear trained on: per gear, the training batches that
    held a sample of it and the samples (summed over the processes); at
    the end of training, warns of every gear that got none, whose
    parameters then stay the base's.

    A sample's gear is where the model routes it in training, by its
    distortion metadata (:meth:`GearNNSegmentor.gear_of`). The counts cover
    the iterations of this run (a resumed run counts afresh). They are
    logged at the end of training and, with ``interval``, every
    ``interval`` iterations. Other models are left alone.

    Args:
        interval (int): also log every ``interval`` training iterations;
            0 logs at the end of training only.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 0) -> None:
        if int(interval) != interval or interval < 0:
            raise ValueError(
                f'interval must be a non-negative integer, got {interval!r}'
            )
        self.interval = int(interval)
        self._batches: Optional[torch.Tensor] = None
        self._samples: Optional[torch.Tensor] = None
        self._iters = 0

    @staticmethod
    def _gear_model(runner):
        model = unwrap_model(runner.model)
        return model if hasattr(model, 'gear_bank') else None

    def before_train(self, runner) -> None:
        model = self._gear_model(runner)
        if model is None:
            return
        num_gears = model.space.num_gears
        self._batches = torch.zeros(num_gears, dtype=torch.int64)
        self._samples = torch.zeros(num_gears, dtype=torch.int64)
        self._iters = 0

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        model = self._gear_model(runner)
        if model is None or self._batches is None:
            return
        samples = (data_batch or {}).get('data_samples') or []
        gears = [model.gear_of(sample) for sample in samples]
        for gear in gears:
            self._samples[gear] += 1
        for gear in set(gears):
            self._batches[gear] += 1
        self._iters += 1
        if self.interval and self.every_n_train_iters(runner, self.interval):
            self._log(runner, model, final=False)

    def after_train(self, runner) -> None:
        model = self._gear_model(runner)
        if model is not None and self._batches is not None:
            self._log(runner, model, final=True)

    def counts(self) -> List[dict]:
        """Per gear of this process: ``gear``, ``batches``, ``samples``."""
        if self._batches is None:
            return []
        return [
            dict(gear=gear, batches=int(b), samples=int(s))
            for gear, (b, s) in enumerate(
                zip(self._batches.tolist(), self._samples.tolist())
            )
        ]

    def _log(self, runner, model, final: bool) -> None:
        # Every process logs the sums (a collective: all of them call it).
        batches, samples = self._batches.clone(), self._samples.clone()
        all_reduce(batches)
        all_reduce(samples)
        iters = f'{self._iters} training iteration' + (
            '' if self._iters == 1 else 's'
        )
        labels = [_label(model, gear) for gear in range(len(batches))]
        per_gear = ', '.join(
            f'{label}: {int(b)} ({int(s)})'
            for label, b, s in zip(labels, batches.tolist(), samples.tolist())
        )
        runner.logger.info(
            f'gear training batches (samples) in {iters}, '
            f'{adaptor_size_text(model.adaptor_names)}: {per_gear}'
        )
        if not final:
            return
        # Gear 0 is the base: clean samples train nothing.
        idle = [
            label
            for label, count in zip(labels[1:], batches[1:].tolist())
            if not count
        ]
        if idle:
            runner.logger.warning(
                f'{len(idle)} gear(s) got no training batch in {iters}: '
                f'{", ".join(idle)}; no gradient reached them: their '
                "parameters are still the base's. Train longer, or check "
                "the train pipeline's distortion transform (its space, "
                'clean_prob) against the gear table'
            )


def _label(model, gear: int) -> str:
    """``'gear 3 (jpeg 15)'``."""
    dtype, level = model.space.level_of(gear)
    level = '' if level is None else f' {level}'
    return f'gear {gear} ({dtype}{level})'
