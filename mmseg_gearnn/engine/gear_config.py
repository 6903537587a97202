"""Completing a gear config for a run: the distortion transforms its
pipelines need, the sweep of every gear its evaluation needs, the clean
copies of a distilled model and the default gear hooks (what
``tools/train.py`` and ``tools/test.py`` add to a user's config)."""

import copy
import logging
from typing import List

from mmengine.logging import print_log
from mmseg.registry import TRANSFORMS

from ..distortions.clean_copy import CLEAN_IMG
from ..distortions.transforms import _DistortionTransform
from ..models.model_kind import is_distilled_config, is_gear_config
from ..selection.budget import check_budget_request
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
    the frame's size (:func:`add_clean_copies` then keeps the copy).
    Validation and test then sweep every gear
    (:func:`add_distortion_sweeps`). A config whose model is not a gear
    model is left alone.

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
    return changes + add_distortion_sweeps(cfg)


def _swept_metric(metric: dict, space: dict) -> dict:
    """The :class:`DistortionIoUMetric` that replaces an ``IoUMetric``,
    keeping what both take."""
    kept = ('ignore_index', 'nan_to_num', 'output_dir', 'format_only')
    kept += ('collect_device', 'prefix', 'collect_dir')
    swept = {k: copy.deepcopy(metric[k]) for k in kept if k in metric}
    return dict(type='DistortionIoUMetric', space=space, **swept)


def _swept_evaluator(evaluator, space: dict):
    """``evaluator`` with its ``IoUMetric`` (or, where it has none, an
    added metric) a :class:`DistortionIoUMetric`; None where it already
    has one."""
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else []
    if isinstance(evaluator, dict):
        metrics = [evaluator]
    if any(_is_step(m, 'DistortionIoUMetric') for m in metrics):
        return None
    swept = [
        _swept_metric(m, space) if _is_step(m, 'IoUMetric') else m
        for m in metrics
    ]
    if not any(_is_step(m, 'IoUMetric') for m in metrics):
        swept.append(dict(type='DistortionIoUMetric', space=space))
    return swept[0] if len(swept) == 1 else swept


def add_distortion_sweeps(cfg) -> List[str]:
    """Makes a gear config's validation and test evaluate every gear: the
    dataset is wrapped in a ``DistortionSweepDataset`` (every frame clean
    and under every (type, level) of the model's space) and the evaluator
    reports per (type, level) with ``DistortionIoUMetric`` (which replaces
    ``IoUMetric``, or joins the other metrics).

    An mmseg config inherited by a gear config evaluates clean frames
    only: every sample would go to the clean gear, the base, and the
    scores would say nothing of the gears. Datasets already swept and
    evaluators that already score per distortion are kept; a dataset
    wrapper without a pipeline of its own (e.g. ``ConcatDataset``) is
    left alone with a log line saying so. A config whose model is not a
    gear model is left alone.

    Returns:
        list[str]: one line per change, for the log.
    """
    if not is_gear_config(cfg):
        return []
    space = cfg.model.get('space') or cfg.model.module.space
    changes = []
    for mode in ('val', 'test'):
        loader = cfg.get(f'{mode}_dataloader') or {}
        dataset = loader.get('dataset')
        if not isinstance(dataset, dict):
            continue
        if not _is_step(dataset, 'DistortionSweepDataset'):
            if 'pipeline' not in dataset:
                changes.append(
                    f'{mode}_dataloader: {dataset.get("type")} is not '
                    'wrapped in a DistortionSweepDataset (it holds no '
                    'pipeline): it evaluates clean frames only'
                )
                continue
            loader['dataset'] = dict(
                type='DistortionSweepDataset',
                space=copy.deepcopy(space),
                dataset=dataset,
            )
            changes.append(
                f'{mode}_dataloader: {dataset.get("type")} wrapped in a '
                'DistortionSweepDataset (clean and every (type, level))'
            )
        swept = _swept_evaluator(
            cfg.get(f'{mode}_evaluator'), copy.deepcopy(space)
        )
        if swept is not None:
            cfg[f'{mode}_evaluator'] = swept
            changes.append(
                f'{mode}_evaluator: DistortionIoUMetric scores per '
                '(type, level)'
            )
    return changes


def _distorted_last(pipeline) -> List[str]:
    """Moves the clean copy and the distortion of a distilled training
    pipeline right before its packing, where another step (a flip, a
    crop, a photometric jitter) follows them: the two frames must differ
    only by the distortion."""
    block = [
        step
        for step in pipeline
        if _is_step(step, 'KeepCleanCopy') or is_distortion_step(step)
    ]
    if not block:
        return []
    first = next(i for i, step in enumerate(pipeline) if step is block[0])
    packed = _packed_at(pipeline)
    between = [
        step
        for step in pipeline[first:packed]
        if not any(step is moved for moved in block)
    ]
    if not between:
        return []
    rest = [s for s in pipeline if not any(s is moved for moved in block)]
    at = rest.index(between[-1]) + 1
    pipeline[:] = rest[:at] + block + rest[at:]
    names = ', '.join(step['type'] for step in block)
    return [
        f'train_dataloader: {names} moved after {between[-1]["type"]}, '
        'so that the clean copy sees every step the distorted frame does'
    ]


def add_clean_copies(cfg) -> List[str]:
    """Makes the training pipelines of a distilled gear config keep the
    clean frame that its loss compares with: ``KeepCleanCopy`` right
    before the distortion transform where it is missing, and
    ``'clean_img'`` in every ``PackSegInputs``' meta keys. The clean copy
    and the distortion go right before the packing, after every flip,
    crop or photometric step (moved there where the pipeline had them
    earlier), so that the two frames the loss compares are pixel-aligned
    and differ only by the distortion. Other configs are left alone.

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
        if distortions:
            changes += _distorted_last(pipeline)
        changes += _packed_meta_key(pipeline, CLEAN_IMG, 'train_dataloader')
    return changes


#: mmseg's (and mmcv's) transforms that change an image's colours.
PHOTOMETRIC_STEPS = (
    'PhotoMetricDistortion',
    'AdjustGamma',
    'CLAHE',
    'RGB2Gray',
    'ColorJitter',
    'BioMedicalGaussianNoise',
    'BioMedicalGaussianBlur',
)


def warn_jitter_after_distortion(cfg) -> List[str]:
    """Warns where a gear config's training pipeline changes the colours
    of a frame after distorting it (``PhotoMetricDistortion`` and the
    other :data:`PHOTOMETRIC_STEPS`): a gear then learns jittered
    distortions while testing shows it plain ones. The distortion stays
    where a camera distorts, before the resize (a distilled model's is
    moved after the jitter, :func:`add_clean_copies`); the warning names
    the step and the fix.

    Returns:
        list[str]: the warnings, each also logged (``WARNING``).
    """
    if not is_gear_config(cfg):
        return []
    found = []
    dataset = (cfg.get('train_dataloader') or {}).get('dataset')
    for pipeline in _pipelines(dataset):
        distorted = [
            i for i, step in enumerate(pipeline) if is_distortion_step(step)
        ]
        if not distorted:
            continue
        jitter = [
            step['type']
            for step in pipeline[distorted[0] + 1 :]
            if any(_is_step(step, name) for name in PHOTOMETRIC_STEPS)
        ]
        if jitter:
            line = (
                f'train_dataloader: {", ".join(jitter)} follows '
                f'{pipeline[distorted[0]]["type"]}: the gears train on '
                'jittered distortions but are tested on plain ones; move '
                'the distortion after it in the training pipeline, or drop '
                'the jitter, if the distortion must reach the model as is'
            )
            print_log(line, logger='current', level=logging.WARNING)
            found.append(line)
    return found


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


def check_budget_adaptor(cfg) -> None:
    """Checks a gear config's adaptor by budget whole (its method and
    options too, :func:`~mmseg_gearnn.selection.check_budget_request`),
    before anything is built: a misspelt option would otherwise stop the
    run only when the gears are about to be selected.

    Raises:
        ValueError: naming the bad budget, method or option.
    """
    if not is_gear_config(cfg):
        return
    model = cfg.model
    if model.get('module') is not None and 'segmentor' not in model:
        model = model['module']  # a TTA model around the segmentor
    adaptor = model.get('adaptor')
    if isinstance(adaptor, dict):
        check_budget_request(adaptor)


def complete_gear_config(cfg) -> List[str]:
    """Completes a gear config for a run: :func:`add_gear_distortions`
    (with :func:`add_distortion_sweeps`), :func:`add_clean_copies` and
    :func:`add_gear_hooks`, then :func:`warn_jitter_after_distortion`,
    once :func:`check_budget_adaptor` passed.
    ``tools/train.py`` and ``tools/test.py`` call it; call it on a config
    before ``Runner.from_cfg`` to get the same run. Does nothing to
    other configs.

    Returns:
        list[str]: one line per change, for the log.

    Raises:
        ValueError: a bad adaptor by budget (:func:`check_budget_adaptor`).
    """
    check_budget_adaptor(cfg)
    changes = (
        add_gear_distortions(cfg) + add_clean_copies(cfg) + add_gear_hooks(cfg)
    )
    warn_jitter_after_distortion(cfg)
    return changes


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
