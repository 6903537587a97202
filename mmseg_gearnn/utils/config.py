"""Config helpers shared by the tools."""

import copy
from typing import List

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _set_root(dataset, root: str) -> int:
    if not isinstance(dataset, dict):
        return 0
    count = 0
    if 'data_root' in dataset:
        dataset['data_root'] = root
        count += 1
    count += _set_root(dataset.get('dataset'), root)
    for inner in dataset.get('datasets', None) or []:
        count += _set_root(inner, root)
    return count


def set_data_root(cfg, root: str) -> int:
    """Points every dataloader's dataset (wrappers included) at ``root``.

    A top-level ``data_root`` is copied into the dataloaders when a config
    file is read, so overriding it afterwards moves nothing; this does.

    Returns:
        int: the number of datasets changed.

    Raises:
        ValueError: if no dataset of the config has a ``data_root``.
    """
    cfg['data_root'] = root
    count = sum(
        _set_root(cfg[key].get('dataset'), root)
        for key in DATALOADERS
        if cfg.get(key)
    )
    if count == 0:
        raise ValueError(
            'no dataloader of this config has a data_root to set '
            '(generated datasets read no files)'
        )
    return count


CHECKED_LOADERS = ('LoadCheckedImageFromFile', 'LoadCheckedAnnotations')


def _skip_in(dataset) -> int:
    if not isinstance(dataset, dict):
        return 0
    count = 0
    for step in dataset.get('pipeline', None) or []:
        if step.get('type') in CHECKED_LOADERS:
            step['on_error'] = 'skip'
            count += 1
        elif step.get('type') == 'PackSegInputs':
            _with_meta_key(step, 'skipped')
    count += _skip_in(dataset.get('dataset'))
    for inner in dataset.get('datasets', None) or []:
        count += _skip_in(inner)
    return count


def skip_bad_files(cfg, dataloader: str = 'test_dataloader') -> int:
    """Makes an evaluation skip and report bad image and label files.

    Sets ``on_error='skip'`` on every checked loading transform of the
    dataloader's dataset (wrappers included), adds ``'skipped'`` to
    ``PackSegInputs``'s meta keys and adds a ``SkippedFilesHook``, which
    logs the skipped files and writes ``skipped_files.json`` to the work
    dir. A skipped sample's label is all ignore index: it adds nothing to
    the IoU metrics.

    Returns:
        int: the number of loading transforms changed.

    Raises:
        ValueError: if the pipeline has no checked loading transform.
    """
    count = _skip_in((cfg.get(dataloader) or {}).get('dataset'))
    if count == 0:
        raise ValueError(
            f'the {dataloader} pipeline has no {" or ".join(CHECKED_LOADERS)}'
            ': no file is checked, so none can be skipped'
        )
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(h.get('type') == 'SkippedFilesHook' for h in hooks):
        hooks.append(dict(type='SkippedFilesHook'))
    cfg['custom_hooks'] = hooks
    return count


def _walk(node, visit) -> int:
    """Calls ``visit(parent, key, value)`` on every dict entry of a nested
    config (lists included); returns how many calls returned True."""
    count = 0
    if isinstance(node, dict):
        for key in list(node.keys()):
            if visit(node, key, node[key]):
                count += 1
            count += _walk(node[key], visit)
    elif isinstance(node, (list, tuple)):
        for item in node:
            count += _walk(item, visit)
    return count


def _walk_below(cfg, visit, skip: str) -> int:
    """:func:`_walk` below every top-level key of ``cfg`` but ``skip``."""
    return sum(_walk(cfg[key], visit) for key in cfg.keys() if key != skip)


def set_crop_size(cfg, crop_size) -> int:
    """Trains and infers at ``crop_size`` (h, w) instead of
    ``cfg.crop_size``.

    A top-level ``crop_size`` is copied into the pipelines and the data
    preprocessor when a config file is read, so overriding it afterwards
    changes nothing; this does. Every ``crop_size`` and preprocessor
    ``size`` becomes ``crop_size``, and every resize ``scale`` is scaled by
    the same factor as the crop, so that training frames still cover the
    crop and inference runs at the new resolution.

    Returns:
        int: the number of values changed.

    Raises:
        ValueError: if ``crop_size`` is not two positive ints or the config
            has no top-level ``crop_size`` to scale from.
    """
    if (
        not isinstance(crop_size, (tuple, list))
        or len(crop_size) != 2
        or not all(isinstance(s, int) and s > 0 for s in crop_size)
    ):
        raise ValueError(
            f'crop_size must be two positive ints (h, w), got {crop_size!r}'
        )
    old = cfg.get('crop_size', None)
    if old is None:
        raise ValueError(
            'the config has no top-level crop_size: there is no resolution '
            'to scale the resize steps from'
        )
    height, width = crop_size
    scale_h, scale_w = height / old[0], width / old[1]

    def visit(parent, key, value):
        if key == 'crop_size' and value is not None:
            parent[key] = (height, width)
        elif key == 'size' and parent.get('type') == 'SegDataPreProcessor':
            parent[key] = (height, width)
        elif (
            key == 'scale'
            and parent.get('type') in ('Resize', 'RandomResize')
            and isinstance(value, (list, tuple))
        ):
            # mmcv scales are (w, h).
            old_w, old_h = value
            parent[key] = (round(old_w * scale_w), round(old_h * scale_h))
        else:
            return False
        return True

    count = _walk_below(cfg, visit, skip='crop_size')
    cfg['crop_size'] = (height, width)
    return count


def set_distortion_space(cfg, space: dict) -> int:
    """Puts ``space`` wherever the config holds a distortion space: the
    top-level ``distortion_space`` and every ``space`` of a transform,
    dataset, metric or model.

    Like ``crop_size``, a top-level ``distortion_space`` is copied where it
    is used when the file is read; this replaces every copy.

    Returns:
        int: the number of places changed, the top level included.

    Raises:
        ValueError: if ``space`` has no ``distortions`` or the config holds
            no distortion space.
    """
    if not isinstance(space, dict) or not space.get('distortions'):
        raise ValueError(
            'space must be a distortion space dict with "distortions", got '
            f'{space!r}'
        )

    def visit(parent, key, value):
        if (
            key == 'space'
            and isinstance(value, dict)
            and 'distortions' in value
        ):
            parent[key] = copy.deepcopy(space)
            return True
        return False

    count = _walk_below(cfg, visit, skip='distortion_space')
    if 'distortion_space' in cfg:
        cfg['distortion_space'] = copy.deepcopy(space)
        count += 1
    if count == 0:
        raise ValueError('the config holds no distortion space to replace')
    return count


# -- gear runs ---------------------------------------------------------------
GEAR_META_KEY = 'distortion'
_PIPELINE_KEYS = {
    'train_dataloader': 'train',
    'val_dataloader': 'val',
    'test_dataloader': 'test',
}


def _model_class(cfg):
    """The class of the config's model (the segmentor under a test-time
    augmentation wrapper); None where it is not registered."""
    from mmseg.registry import MODELS

    model = cfg.get('model', None) or {}
    if model.get('module') is not None and 'segmentor' not in model:
        model = model['module']  # a TTA model around the segmentor
    model_type = model.get('type')
    if isinstance(model_type, str):
        model_type = MODELS.get(model_type)
    return model_type if isinstance(model_type, type) else None


def is_gear_config(cfg) -> bool:
    """Whether the config's model is a :class:`GearNNSegmentor` (or a
    subclass), also under a test-time augmentation wrapper."""
    from ..models.segmentors import GearNNSegmentor

    model_class = _model_class(cfg)
    return model_class is not None and issubclass(model_class, GearNNSegmentor)


def is_distilled_config(cfg) -> bool:
    """Whether the config's model is a
    :class:`DistilledGearNNSegmentor` (or a subclass): its training
    compares every distorted frame with the clean one."""
    from ..models.segmentors import DistilledGearNNSegmentor

    model_class = _model_class(cfg)
    return model_class is not None and issubclass(
        model_class, DistilledGearNNSegmentor
    )


def _is_distortion_step(step) -> bool:
    from mmseg.registry import TRANSFORMS

    # The shared base of the transforms that write results['distortion'].
    from ..distortions.transforms import _DistortionTransform

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


def _with_meta_key(step: dict, key: str) -> bool:
    """Adds ``key`` to a ``PackSegInputs`` step's meta keys (mmseg's
    defaults where it sets none); True if it was missing."""
    if 'meta_keys' not in step:
        from mmseg.datasets.transforms import PackSegInputs

        step['meta_keys'] = PackSegInputs.__init__.__defaults__[0]
    if key in step['meta_keys']:
        return False
    step['meta_keys'] = tuple(step['meta_keys']) + (key,)
    return True


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
        if not any(_is_distortion_step(step) for step in pipeline):
            at = _image_loaded_at(pipeline)
            if mode == 'train' and is_distilled_config(cfg):
                at = _packed_at(pipeline)
            step = distortion_step(cfg, mode)
            pipeline.insert(at, step)
            where = f'after {pipeline[at - 1]["type"]}' if at else 'first'
            changes.append(f'{key}: {step["type"]} inserted {where}')
        for pack in _pack_steps(pipeline):
            if _with_meta_key(pack, GEAR_META_KEY):
                changes.append(
                    f"{key}: '{GEAR_META_KEY}' added to PackSegInputs' "
                    'meta_keys'
                )
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
    from ..distortions.clean_copy import CLEAN_IMG

    changes = []
    dataset = (cfg.get('train_dataloader') or {}).get('dataset')
    for pipeline in _pipelines(dataset):
        kept = any(_is_step(step, 'KeepCleanCopy') for step in pipeline)
        distortions = [
            i for i, step in enumerate(pipeline) if _is_distortion_step(step)
        ]
        if not kept and distortions:
            pipeline.insert(distortions[0], dict(type='KeepCleanCopy'))
            changes.append(
                'train_dataloader: KeepCleanCopy inserted before '
                f'{pipeline[distortions[0] + 1]["type"]}'
            )
        for pack in _pack_steps(pipeline):
            if _with_meta_key(pack, CLEAN_IMG):
                changes.append(
                    f"train_dataloader: '{CLEAN_IMG}' added to "
                    "PackSegInputs' meta_keys"
                )
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


# -- the tools' flags --------------------------------------------------------
def enable_amp(cfg) -> bool:
    """Trains with automatic mixed precision (``tools/train.py --amp``):
    the config's ``OptimWrapper`` becomes mmengine's ``AmpOptimWrapper``
    with a dynamic loss scale.

    Returns:
        bool: False if the config already trains with AMP.

    Raises:
        RuntimeError: on a machine without an accelerator (mixed precision
            here means float16 on CUDA, NPU, MLU or MUSA).
        ValueError: if the config's optimizer wrapper is another type.
    """
    from mmengine.device import get_device

    device = get_device()
    if device not in ('cuda', 'npu', 'mlu', 'musa'):
        raise RuntimeError(
            f'--amp needs a GPU (CUDA) or an NPU, MLU or MUSA device, where '
            "mmengine's AmpOptimWrapper trains in float16; this machine "
            f'has none (device: {device}). Train without --amp.'
        )
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper == 'AmpOptimWrapper':
        return False
    if wrapper != 'OptimWrapper':
        raise ValueError(
            '--amp turns an OptimWrapper into an AmpOptimWrapper, but the '
            f"config's optim_wrapper is {wrapper!r}; set "
            "optim_wrapper.type='AmpOptimWrapper' in the config instead"
        )
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'
    return True


def write_predictions(cfg, out_dir: str) -> int:
    """Writes each test sample's predicted label map under ``out_dir``
    (``tools/test.py --out``), as mmseg's ``IoUMetric(output_dir=...)``
    does; the gear metric also names each file by its distortion.

    Returns:
        int: the number of metrics set to write.
    """
    evaluators = cfg.test_evaluator
    if isinstance(evaluators, dict):
        evaluators = [evaluators]
    for metric in evaluators:
        metric['output_dir'] = out_dir
    return len(evaluators)


def show_inputs(
    cfg,
    show_dir: str = None,
    show: bool = False,
    wait_time: float = 2.0,
) -> dict:
    """Draws the evaluated inputs as the model saw them (``tools/test.py
    --show-dir`` / ``--show``): the config's visualization hook becomes a
    drawing :class:`GearVisualizationHook`, keeping its ``interval``.

    Returns:
        dict: the hook's config.
    """
    hooks = cfg.get('default_hooks', None)
    if hooks is None:
        cfg['default_hooks'] = hooks = {}
    old = dict(hooks.get('visualization', None) or {})
    hook = dict(
        type='GearVisualizationHook',
        draw=True,
        interval=old.get('interval', 50),
        show=show,
        wait_time=wait_time if show else 0.0,
        out_dir=show_dir,
    )
    hooks['visualization'] = hook
    return hook


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
        _is_distortion_step(step) for step in cfg.tta_pipeline
    ):
        raise ValueError(
            "a gear config's tta_pipeline needs a distortion transform "
            'after its image loading step, or the augmented inputs are '
            'clean whatever distortion the test asks for; '
            'mmseg_gearnn.utils.complete_gear_config(cfg) inserts it'
        )
    dataset['pipeline'] = copy.deepcopy(cfg.tta_pipeline)
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def resume_from_work_dir(cfg) -> str:
    """Resumes from the latest checkpoint in the work dir
    (``tools/train.py --resume``), also where ``load_from`` names a
    starting point such as a gear config's base.

    mmengine resumes from ``load_from`` when it is set, which for a gear
    config is the base: the run would start again from iteration 0. Here
    ``load_from`` is the start of a run that has no checkpoint yet; where
    the work dir has one, ``load_from`` is cleared and mmengine resumes
    from the latest checkpoint of the work dir.

    Returns:
        str: the checkpoint that resumes, or ``''`` where the work dir has
        none (the run starts from ``load_from``).
    """
    from mmengine.runner import find_latest_checkpoint

    latest = find_latest_checkpoint(cfg.work_dir) or ''
    cfg.resume = bool(latest)
    if latest:
        cfg.load_from = None
    return latest
