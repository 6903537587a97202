"""Config helpers shared by the tools."""

import copy

from mmseg.datasets.transforms import PackSegInputs

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def with_meta_key(step: dict, key: str) -> bool:
    """Adds ``key`` to a ``PackSegInputs`` step's meta keys (mmseg's
    defaults where it sets none); True if it was missing."""
    if 'meta_keys' not in step:
        step['meta_keys'] = PackSegInputs.__init__.__defaults__[0]
    if key in step['meta_keys']:
        return False
    step['meta_keys'] = tuple(step['meta_keys']) + (key,)
    return True


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
            with_meta_key(step, 'skipped')
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
