from typing import Optional

from mmengine.hooks import Hook
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import HOOKS

from ...distortions.transforms import _DistortionTransform
from ...utils.dist import unwrap_model
from ..gear_config import GEAR_META_KEY

# The loss key a GearNNSegmentor logs for a batch that trained no gear.
NO_DISTORTED_SAMPLES = 'loss_no_distorted_samples'

_FIX = (
    'Call mmseg_gearnn.engine.complete_gear_config(cfg) before building '
    'the Runner (tools/train.py and tools/test.py do), or edit the config'
)


def _transforms(dataset) -> list:
    """The transforms of a built dataset and of the datasets it wraps."""
    found = list(getattr(getattr(dataset, 'pipeline', None), 'transforms', []))
    inner = getattr(dataset, 'dataset', None)
    if inner is not None:
        found += _transforms(inner)
    for each in getattr(dataset, 'datasets', None) or []:
        found += _transforms(each)
    return found


@HOOKS.register_module()
class DistortedInputsGuardHook(Hook):
    """Stops a gear run whose samples cannot reach their gears.

    A :class:`GearNNSegmentor` routes each sample by the ``'distortion'``
    record that a distortion transform writes and ``PackSegInputs``
    carries. Without them every sample runs on the clean gear, the base:
    training trains nothing and evaluation measures only the base, and
    both still finish. This hook raises instead:

    - before training, if the train pipeline has no distortion transform
      or its ``PackSegInputs`` drops ``'distortion'``; before validation
      and testing, if a pipeline distorts but drops ``'distortion'`` (a
      pipeline without a distortion transform evaluates clean inputs, as
      intended);
    - if no training batch of the first ``max_clean_iters`` iterations
      trained a gear (each logged ``loss_no_distorted_samples``), e.g. a
      distortion transform that leaves every image clean.

    The errors name the missing transform and the line that adds it. Other
    models are left alone.

    Args:
        max_clean_iters (int): training iterations, from the start of this
            run (a resumed run counts afresh), after which a run that has
            trained no gear stops.
    """

    priority = 'HIGH'

    def __init__(self, max_clean_iters: int = 20) -> None:
        if int(max_clean_iters) != max_clean_iters or max_clean_iters < 1:
            raise ValueError(
                f'max_clean_iters must be a positive integer, got '
                f'{max_clean_iters!r}'
            )
        self.max_clean_iters = int(max_clean_iters)
        self._clean_iters: Optional[int] = 0
        self._checked = set()

    @staticmethod
    def _gear_model(runner):
        model = unwrap_model(runner.model)
        return model if hasattr(model, 'gear_bank') else None

    def _check_pipeline(self, runner, mode: str, dataloader) -> None:
        if mode in self._checked or self._gear_model(runner) is None:
            return
        self._checked.add(mode)
        transforms = _transforms(dataloader.dataset)
        names = [type(t).__name__ for t in transforms]
        distorts = any(isinstance(t, _DistortionTransform) for t in transforms)
        if mode == 'train' and not distorts:
            raise RuntimeError(
                'gear training without a distortion transform: the train '
                f'pipeline {names} leaves every image clean, so every sample '
                'runs on the clean gear (the base) and no gear trains. Add, '
                'right after the image loading step (a camera distorts '
                'before any resize): '
                "dict(type='RandomDistortion', space=_base_.distortion_space"
                f', clean_prob=0.0, draw_every={dataloader.batch_size}). '
                + _FIX
                + '.'
            )
        packs = [t for t in transforms if isinstance(t, PackSegInputs)]
        if distorts and any(GEAR_META_KEY not in t.meta_keys for t in packs):
            raise RuntimeError(
                f"the {mode} pipeline's PackSegInputs drops "
                f"'{GEAR_META_KEY}' (meta_keys lacks it), so every sample "
                'runs on the clean gear whatever its distortion. Give it '
                "meta_keys=_base_.gearnn_meta_keys (mmseg's keys plus "
                f"'{GEAR_META_KEY}'). " + _FIX + '.'
            )

    def before_train(self, runner) -> None:
        self._clean_iters = 0
        self._check_pipeline(runner, 'train', runner.train_dataloader)

    def before_val(self, runner) -> None:
        self._check_pipeline(runner, 'val', runner.val_dataloader)

    def before_test(self, runner) -> None:
        self._check_pipeline(runner, 'test', runner.test_dataloader)

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        if self._clean_iters is None or self._gear_model(runner) is None:
            return
        if NO_DISTORTED_SAMPLES not in (outputs or {}):
            self._clean_iters = None  # a gear trained: nothing more to check
            return
        self._clean_iters += 1
        if self._clean_iters >= self.max_clean_iters:
            raise RuntimeError(
                f'no gear trained in the first {self._clean_iters} '
                'training iterations: every sample was clean or routed to '
                'the clean gear (each batch logged '
                f"{NO_DISTORTED_SAMPLES}). Check the train pipeline's "
                'distortion transform (clean_prob below 1, types of the '
                "model's space) and that PackSegInputs' meta_keys include "
                f"'{GEAR_META_KEY}'."
            )
