"""The test pipeline for frames that come distorted, as from a camera.

``tools/test.py`` distorts clean images inside the pipeline; a camera
delivers them distorted already. :func:`camera_pipeline` turns the config's
test pipeline (:func:`test_pipeline_of`) into one for such frames: no
distortion transform, the inferencer's image loader, no labels.
"""

import copy
import warnings
from typing import List, Optional, Sequence

from mmengine.config import Config
from mmseg.registry import TRANSFORMS

from ..distortions.transforms import _DistortionTransform
from ..selection.data import transform_type_name

# Image loaders of test pipelines (mmseg's and the plugin's checked one).
IMAGE_LOADERS = (
    'LoadImageFromFile',
    'LoadCheckedImageFromFile',
    'LoadImageFromNDArray',
    'InferencerLoader',
)
# Label loaders: inference has no labels.
LABEL_LOADERS = (
    'LoadAnnotations',
    'LoadCheckedAnnotations',
    'LoadDepthAnnotation',
)


def is_distortion_transform(step: dict) -> bool:
    """Whether a pipeline step distorts the image (a transform of
    :mod:`mmseg_gearnn.distortions`)."""
    kind = step.get('type')
    cls = kind if isinstance(kind, type) else TRANSFORMS.get(kind)
    return isinstance(cls, type) and issubclass(cls, _DistortionTransform)


def test_pipeline_of(cfg: Config) -> List[dict]:
    """The pipeline ``tools/test.py`` runs: the test dataloader's dataset's
    (inside dataset wrappers such as ``DistortionSweepDataset``), else the
    top-level ``test_pipeline``.

    Raises:
        ValueError: the config has neither.
    """
    dataset = (cfg.get('test_dataloader') or {}).get('dataset')
    while isinstance(dataset, dict):
        if dataset.get('pipeline'):
            return copy.deepcopy(list(dataset['pipeline']))
        dataset = dataset.get('dataset')
    if cfg.get('test_pipeline'):
        return copy.deepcopy(list(cfg.test_pipeline))
    raise ValueError(
        f'{cfg.filename or "the config"} has no test pipeline '
        '(test_dataloader.dataset.pipeline or test_pipeline)'
    )


def camera_pipeline(
    pipeline: Sequence[dict],
    loader: str = 'InferencerLoader',
    label_loader: Optional[str] = None,
) -> List[dict]:
    """A test pipeline for frames that come distorted, as from a camera.

    - every distortion transform is removed: the frame is distorted already
      and must not be distorted again (its metadata, if any, is given to
      the model as the transform's record would be);
    - the image loader becomes ``loader`` (one is put first where the
      pipeline has none: a dataset that hands over loaded images);
    - label loaders are removed, or become ``label_loader``;
    - every other step (resizing included) stays, in order.

    A pipeline that distorts after resizing evaluates frames distorted at
    the model's resolution, where a camera distorts at the frame's own
    size: a warning says so, since predictions can then differ from
    ``tools/test.py``'s.

    Args:
        pipeline (Sequence[dict]): the test pipeline (see
            :func:`test_pipeline_of`).
        loader (str): the image loader to use. Defaults to
            ``'InferencerLoader'`` (mmseg's: arrays or files).
        label_loader (str, optional): the label loader to keep, e.g.
            ``'LoadAnnotations'``; None removes label loading.

    Returns:
        list[dict]: the new pipeline (the input is not changed).
    """
    steps: List[dict] = []
    resized_by = None
    has_loader = False
    for step in copy.deepcopy(list(pipeline)):
        name = transform_type_name(step)
        if is_distortion_transform(step):
            if resized_by is not None:
                warnings.warn(
                    f'the test pipeline distorts after {resized_by}: '
                    'tools/test.py distorts the resized image, a camera '
                    "the frame at its own size, so this pipeline's "
                    'predictions on camera frames can differ from '
                    "tools/test.py's; distort before resizing"
                )
            continue
        if name in IMAGE_LOADERS:
            steps.append(_loader_step(loader, step))
            has_loader = True
        elif name in LABEL_LOADERS:
            if label_loader is not None:
                steps.append(_label_loader_step(label_loader, step))
        else:
            if 'Resize' in name:
                resized_by = name
            steps.append(step)
    if not has_loader:
        steps.insert(0, dict(type=loader))
    return steps


def _loader_step(loader: str, step: dict) -> dict:
    new = dict(type=loader)
    if step.get('to_float32'):
        new['to_float32'] = True
    return new


def _label_loader_step(loader: str, step: dict) -> dict:
    new = dict(type=loader)
    if step.get('reduce_zero_label') is not None:
        new['reduce_zero_label'] = step['reduce_zero_label']
    return new


def with_distortion_key(pipeline: List[dict]) -> List[dict]:
    """Adds ``'distortion'`` to ``PackSegInputs``'s meta keys."""
    for step in pipeline:
        if transform_type_name(step) == 'PackSegInputs':
            if 'meta_keys' not in step:
                from mmseg.datasets.transforms import PackSegInputs

                step['meta_keys'] = PackSegInputs.__init__.__defaults__[0]
            if 'distortion' not in step['meta_keys']:
                step['meta_keys'] = tuple(step['meta_keys']) + ('distortion',)
    return pipeline
