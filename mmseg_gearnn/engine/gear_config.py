"""Completing a gear config for a run: the distortion transforms its
pipelines need, the clean copies of a distilled model and the default gear
hooks (what ``tools/train.py`` and ``tools/test.py`` add to a user's
config)."""

import copy
from typing import List

from mmseg.registry import TRANSFORMS

from ..distortions.clean_copy import CLEAN_IMG
from ..distortions.transforms import _DistortionTransform
from ..models.model_kind import is_distilled_config, is_gear_config
from ..utils.config import with_meta_key

GEAR_META_KEY = 'distortion'
_PIPELINE_KEYS = {
    'train_dataloader': 'train',
    'val_dataloader': 'val',
    'test_dataloader': 'test',
}


def is_distortion_step(step) -> bool:
    """Whether a pipeline step writes ``results['distortion']`` (a
    subclass of the distortion transforms' shared base)."""
    step_type = step.get('type') if isinstance(step, dict) else None
    if isinstance(step_type, str):
        step_type = TRANSFORMS.get(step_type)
    return isinstance(step_type, type) and issubclass(
        step_type, _DistortionTransform
    )


def _is_step(step, name: str) -> bool:
    step_type = step.get('type') if isinstance(step, dict) else None
    if isinstance(step_type, type):
        step_type = step_type.__name__
    return isinstance(step_type, str) and step_type.split('.')[-1] == name


def _packed_at(pipeline) -> int:
    """Where a pipeline packs its results: the index of its
    ``PackSegInputs`` step, else its end."""
    for i, step in enumerate(pipeline):
        if _is_step(step, 'PackSegInputs'):
            return i
    return len(pipeline)


def _image_loaded_at(pipeline) -> int:
    """Where an image exists in ``pipeline``: after its image loading step,
    else at the start (a dataset that hands over loaded images)."""
    for i in range(len(pipeline) - 1, -1, -1):
        step_type = pipeline[i].get('type')
        if isinstance(step_type, str) and 'LoadImage' in step_type:
            return i + 1
        if isinstance(step_type, type) and 'LoadImage' in step_type.__name__:
            return i + 1
    return 0


def _pack_steps(node) -> list:
    """Every ``PackSegInputs`` step of a pipeline, nested ones included
    (``TestTimeAug``'s transforms)."""
    found = []
    if isinstance(node, dict):
        if node.get('type') in ('PackSegInputs', 'mmseg.PackSegInputs'):
            found.append(node)
        for value in node.values():
            found += _pack_steps(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            found += _pack_steps(item)
    return found


def _packed_meta_key(pipeline, meta_key: str, where: str) -> List[str]:
    """Adds ``meta_key`` to every ``PackSegInputs`` of ``pipeline``; one
    log line per step changed."""
    return [
        f"{where}: '{meta_key}' added to PackSegInputs' meta_keys"
        for pack in _pack_steps(pipeline)
        if with_meta_key(pack, meta_key)
    ]


def _pipelines(dataset) -> list:
    """The pipelines of a dataset config and of the datasets it wraps."""
    if not isinstance(dataset, dict):
        return []
    found = [dataset['pipeline']] if dataset.get('pipeline') else []
    found += _pipelines(dataset.get('dataset'))
    for inner in dataset.get('datasets', None) or []:
        found += _pipelines(inner)
    return found


def distortion_step(cfg, mode: str) -> dict:
    """The distortion transform a gear run's ``mode`` pipeline needs.

    Training draws a random (type, level) of the model's gear table, one
    per batch (``draw_every`` = the batch size: a gear's BN statistics see
    the whole batch) and never the clean gear, which is the base and has
    nothing to learn; validation and testing apply what a
    ``DistortionSweepDataset`` requests (clean otherwise).

    Args:
        cfg (Config): a gear config.
        mode (str): ``'train'``, ``'val'`` or ``'test'``.
    """
    space = copy.deepcopy(cfg.model.get('space') or cfg.model.module.space)
    if mode == 'train':
        batch_size = (cfg.get('train_dataloader') or {}).get('batch_size', 1)
        return dict(
            type='RandomDistortion',
            space=space,
            clean_prob=0.0,
            draw_every=batch_size,
        )
    return dict(type='RequestedDistortion', space=space)


def add_gear_distortions(cfg) -> List[str]:
    """Makes the pipelines of a gear config distort and carry the
    distortion, so that samples reach their gears.

    An mmseg config inherited by a gear config has no distortion transform
    and packs no ``'distortion'`` meta key: every sample would route to the
    clean gear and training would train nothing. Into every dataloader
    pipeline (wrapped datasets included) and ``tta_pipeline`` that has no
    distortion transform, this inserts :func:`distortion_step` where a
    camera distorts, right after the image is loaded (before any resize);
    every ``PackSegInputs`` gets ``'distortion'`` in its meta keys.
    Pipelines that already distort keep their transform. A distilled
    model (:func:`is_distilled_config`) compares each distorted training
    frame with its clean copy pixel by pixel, so its training pipeline
    distorts last, right before packing, after every transform that changes
    the frame's size (:func:`add_clean_copies` then keeps the copy). A
    config whose model is not a gear model is left alone.

    Returns:
        list[str]: one line per change, for the log.
    """
    if not is_gear_config(cfg):
        return []
    changes = []
    targets = [
        (key, mode, pipeline)
        for key, mode in _PIPELINE_KEYS.items()
        for pipeline in _pipelines((cfg.get(key) or {}).get('dataset'))
    ]
    if cfg.get('tta_pipeline'):
        targets.append(('tta_pipeline', 'test', cfg.tta_pipeline))
    done = set()  # a dataloader may share its pipeline with another
    for key, mode, pipeline in targets:
        if id(pipeline) in done:
            continue
        done.add(id(pipeline))
        if not any(is_distortion_step(step) for step in pipeline):
            at = _image_loaded_at(pipeline)
            if mode == 'train' and is_distilled_config(cfg):
                at = _packed_at(pipeline)
            step = distortion_step(cfg, mode)
            pipeline.insert(at, step)
            where = f'after {pipeline[at - 1]["type"]}' if at else 'first'
            changes.append(f'{key}: {step["type"]} inserted {where}')
        changes += _packed_meta_key(pipeline, GEAR_META_KEY, key)
    return changes


def add_clean_copies(cfg) -> List[str]:
    """Makes the training pipelines of a distilled gear config keep the
    clean frame that its loss compares with: ``KeepCleanCopy`` right
    before the distortion transform where it is missing, and
    ``'clean_img'`` in every ``PackSegInputs``' meta keys. Other configs
    are left alone.

    Returns:
        list[str]: one line per change, for the log.
    """
    if not is_distilled_config(cfg):
        return []
    changes = []
    dataset = (cfg.get('train_dataloader') or {}).get('dataset')
    for pipeline in _pipelines(dataset):
        kept = any(_is_step(step, 'KeepCleanCopy') for step in pipeline)
        distortions = [
            i for i, step in enumerate(pipeline) if is_distortion_step(step)
        ]
        if not kept and distortions:
            pipeline.insert(distortions[0], dict(type='KeepCleanCopy'))
            changes.append(
                'train_dataloader: KeepCleanCopy inserted before '
                f'{pipeline[distortions[0] + 1]["type"]}'
            )
        changes += _packed_meta_key(pipeline, CLEAN_IMG, 'train_dataloader')
    return changes


def add_gear_hooks(cfg) -> List[str]:
    """Adds to a gear config's ``custom_hooks`` every hook of its
    ``gearnn_hooks`` (``configs/_base_/gearnn_runtime.py``) whose type is
    missing, so that a config wrapping an mmseg segmentor gets them
    without listing them.

    Returns:
        list[str]: one line per hook added, for the log.
    """
    if not is_gear_config(cfg) or not cfg.get('gearnn_hooks'):
        return []
    hooks = list(cfg.get('custom_hooks', None) or [])
    present = {hook.get('type') for hook in hooks}
    added = [
        copy.deepcopy(hook)
        for hook in cfg.gearnn_hooks
        if hook.get('type') not in present
    ]
    cfg['custom_hooks'] = hooks + added
    return [f'custom_hooks: {hook["type"]} added' for hook in added]


def complete_gear_config(cfg) -> List[str]:
    """Completes a gear config for a run: :func:`add_gear_distortions`,
    :func:`add_clean_copies` and :func:`add_gear_hooks`.
    ``tools/train.py`` and ``tools/test.py`` call it; call it on a config
    before ``Runner.from_cfg`` to get the same run. Does nothing to
    other configs.

    Returns:
        list[str]: one line per change, for the log.
    """
    return (
        add_gear_distortions(cfg) + add_clean_copies(cfg) + add_gear_hooks(cfg)
    )


# -- a tool flag that depends on the model ----------------------------------
def _innermost(dataset):
    """The dataset config that holds the pipeline (inside wrappers such as
    ``DistortionSweepDataset``)."""
    while isinstance(dataset, dict) and 'pipeline' not in dataset:
        if dataset.get('dataset') is None:
            break
        dataset = dataset['dataset']
    return dataset


def use_tta(cfg) -> None:
    """Tests with test-time augmentation (``tools/test.py --tta``): the
    config's ``tta_pipeline`` becomes the test dataset's pipeline (inside
    a ``DistortionSweepDataset`` too, so every distortion is still swept)
    and ``tta_model`` wraps the model.

    Call :func:`complete_gear_config` first on a gear config: it puts the
    distortion transform into ``tta_pipeline``, before the augmentations.

    Raises:
        ValueError: if the config has no ``tta_pipeline`` or ``tta_model``,
            or a gear config's ``tta_pipeline`` does not distort (the swept
            distortions would not be applied).
    """
    missing = [k for k in ('tta_pipeline', 'tta_model') if not cfg.get(k)]
    if missing:
        raise ValueError(
            f"--tta needs {' and '.join(missing)} in the config (mmseg's "
            'dataset configs define tta_pipeline; tta_model=dict(type='
            "'SegTTAModel') is in mmseg's default_runtime.py)"
        )
    dataset = _innermost(cfg.test_dataloader.get('dataset'))
    if not isinstance(dataset, dict) or 'pipeline' not in dataset:
        raise ValueError(
            'the test dataset has no pipeline to replace with tta_pipeline'
        )
    if is_gear_config(cfg) and not any(
        is_distortion_step(step) for step in cfg.tta_pipeline
    ):
        raise ValueError(
            "a gear config's tta_pipeline needs a distortion transform "
            'after its image loading step, or the augmented inputs are '
            'clean whatever distortion the test asks for; '
            'mmseg_gearnn.engine.complete_gear_config(cfg) inserts it'
        )
    dataset['pipeline'] = copy.deepcopy(cfg.tta_pipeline)
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model
