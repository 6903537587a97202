"""A GearNN config's wrapped segmentor as a config stock mmseg reads.

:func:`base_config` keeps what mmseg needs to build, load and run the
segmentor and removes what only the plugin defines: the wrapper, its
distortion transforms and meta keys, its hooks, metrics, runner and
optimizer constructor, ``custom_imports`` of the plugin. What mmseg cannot
build without the plugin and cannot be replaced (a plugin backbone or loss
inside the segmentor) stays, with ``custom_imports``, and
:func:`plugin_types` names it, so that the export says the plugin is
needed instead of writing a config that only looks plain.
"""

import copy
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config
from mmengine.registry import Registry

from ..distortions.clean_copy import CLEAN_IMG
from ..models.segmentors.stability import DISTORTED_IMG
from .camera_pipeline import (
    camera_pipeline,
    is_distortion_transform,
    test_pipeline_of,
)

#: The package whose registrations a plain config must not use.
PLUGIN = __name__.split('.')[0]
#: metainfo keys only the plugin's transforms write (``'distortion'``: the
#: distortion transforms' record; ``'skipped'``: the checked loaders').
PLUGIN_META_KEYS = ('distortion', 'skipped', CLEAN_IMG, DISTORTED_IMG)
#: The plugin's checked loaders and the mmseg loaders they extend.
MMSEG_LOADERS = {
    'LoadCheckedImageFromFile': 'LoadImageFromFile',
    'LoadCheckedAnnotations': 'LoadAnnotations',
}
#: Arguments the checked loaders add to mmseg's.
_CHECKED_LOADER_ARGS = ('on_error', 'num_classes', 'ignore_index')
#: Per dataloader, the keys the Runner wants with it (all or none).
_LOADER_COMPANIONS = {
    'train_dataloader': ('train_cfg', 'optim_wrapper', 'param_scheduler'),
    'val_dataloader': ('val_cfg', 'val_evaluator'),
    'test_dataloader': ('test_cfg', 'test_evaluator'),
}
#: Top-level keys that are the plugin's config vocabulary.
_PLUGIN_VARIABLES = ('distortion_space',)
_PLUGIN_VARIABLE_PREFIX = 'gearnn_'


def plugin_type_names() -> Dict[str, str]:
    """Every type the plugin registers in mmseg's registries, with the
    registry's name (``{'KeepCleanCopy': 'transform', ...}``)."""
    import mmseg.registry as registries

    names = {}
    for value in vars(registries).values():
        if isinstance(value, Registry):
            for name, cls in value.module_dict.items():
                if _is_plugin_class(cls):
                    names[name] = value.name
    return names


def _is_plugin_class(cls) -> bool:
    module = getattr(cls, '__module__', '') or ''
    return module == PLUGIN or module.startswith(PLUGIN + '.')


def _is_plugin_type(step, names: Dict[str, str]) -> bool:
    if not isinstance(step, dict):
        return False
    kind = step.get('type')
    if isinstance(kind, str):
        return kind.split('.')[-1] in names
    return isinstance(kind, type) and _is_plugin_class(kind)


def _type_name(kind) -> str:
    return kind if isinstance(kind, str) else getattr(kind, '__name__', '?')


def plugin_types(node, names: Optional[Dict[str, str]] = None) -> List[str]:
    """The plugin's types that ``node`` (a config or part of one) uses,
    sorted and once each."""
    names = plugin_type_names() if names is None else names
    found = set()

    def walk(value) -> None:
        if isinstance(value, dict):
            if _is_plugin_type(value, names):
                found.add(_type_name(value['type']))
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(node)
    return sorted(found)


# -- pipelines ----------------------------------------------------------------
def _plain_step(step: dict, names: Dict[str, str]) -> Optional[dict]:
    """The step as mmseg's, or None where only the plugin has it."""
    if not _is_plugin_type(step, names):
        if 'meta_keys' in step:
            step['meta_keys'] = _plain_meta_keys(step['meta_keys'])
        return step
    mmseg_loader = MMSEG_LOADERS.get(_type_name(step['type']))
    if mmseg_loader is None:
        return None
    plain = {k: v for k, v in step.items() if k not in _CHECKED_LOADER_ARGS}
    plain['type'] = mmseg_loader
    return plain


def _plain_meta_keys(keys):
    kept = [k for k in keys if k not in PLUGIN_META_KEYS]
    return tuple(kept) if isinstance(keys, tuple) else kept


def _plain_pipelines(node, names: Dict[str, str]) -> None:
    """Every ``*pipeline`` list in ``node``: the plugin's steps go (its
    checked loaders become mmseg's), and so do its meta keys."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key.endswith('pipeline') and isinstance(value, list):
                steps = [
                    _plain_step(s, names) if isinstance(s, dict) else s
                    for s in value
                    if not (isinstance(s, dict) and is_distortion_transform(s))
                ]
                node[key] = [s for s in steps if s is not None]
            elif key.endswith('meta_keys') and isinstance(
                value, (list, tuple)
            ):
                node[key] = _plain_meta_keys(value)
            _plain_pipelines(node[key], names)
    elif isinstance(node, list):
        for item in node:
            _plain_pipelines(item, names)


# -- the runner's parts -------------------------------------------------------
def _unwrap_sweep(loader: Optional[dict]) -> None:
    """A sweep over distortion levels becomes the dataset it sweeps."""
    if loader and loader.get('dataset', {}).get('type') == (
        'DistortionSweepDataset'
    ):
        loader['dataset'] = loader['dataset']['dataset']


def _plain_loaders(base: Config, names, notes: List[str]) -> None:
    """A dataloader whose dataset is the plugin's: the test loader keeps
    the test pipeline on mmseg's ``BaseSegDataset`` (no files: set them to
    evaluate); the train and val loaders go, with the keys the Runner
    wants with them."""
    for key, companions in _LOADER_COMPANIONS.items():
        loader = base.get(key)
        if not loader or not plugin_types(loader.get('dataset'), names):
            continue
        kinds = ', '.join(plugin_types(loader.get('dataset'), names))
        if key == 'test_dataloader':
            dataset = loader['dataset']
            loader['dataset'] = dict(
                type='BaseSegDataset',
                lazy_init=True,
                pipeline=copy.deepcopy(dataset.get('pipeline', [])),
            )
            notes.append(
                f"test_dataloader: the dataset ({kinds}) is the plugin's; "
                "mmseg's BaseSegDataset with the test pipeline stands in "
                '(set its data_root, data_prefix and metainfo to evaluate '
                "with mmseg's tools/test.py)"
            )
            continue
        for dropped in (key,) + companions:
            base.pop(dropped, None)
        notes.append(
            f"{key}: the dataset ({kinds}) is the plugin's; "
            f'{", ".join((key,) + companions[:-1])} and {companions[-1]} '
            'are left out'
        )


def _plain_runner_parts(base: Config, names, notes: List[str]) -> None:
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = base.get(key)
        if isinstance(evaluator, dict) and _is_plugin_type(evaluator, names):
            base[key] = dict(type='IoUMetric', iou_metrics=['mIoU'])
    hooks = base.get('default_hooks') or {}
    for name in [k for k, v in hooks.items() if _is_plugin_type(v, names)]:
        notes.append(
            f'default_hooks.{name} ({_type_name(hooks[name]["type"])}) is '
            "the plugin's and is left out (mmengine's default applies)"
        )
        hooks.pop(name)
    if _is_plugin_type(dict(type=base.get('runner_type')), names):
        base.pop('runner_type')
    wrapper = base.get('optim_wrapper')
    if isinstance(wrapper, dict) and _is_plugin_type(
        dict(type=wrapper.get('constructor')), names
    ):
        wrapper.pop('constructor')
    if _is_plugin_type(base.get('model_wrapper_cfg'), names):
        base.pop('model_wrapper_cfg')
    for key in list(base.keys()):
        if key in ('model', 'custom_imports'):
            continue
        value = base[key]
        if (
            key in _PLUGIN_VARIABLES
            or key.startswith(_PLUGIN_VARIABLE_PREFIX)
            or (isinstance(value, str) and value in names)
            or plugin_types(value, names)
        ):
            base.pop(key)


def _plain_custom_imports(base: Config, keep_plugin: bool) -> None:
    imports_cfg = base.get('custom_imports')
    if not imports_cfg or keep_plugin:
        return
    imports = imports_cfg.get('imports', [])
    imports = [imports] if isinstance(imports, str) else list(imports)
    kept = [
        m for m in imports if not (m == PLUGIN or m.startswith(PLUGIN + '.'))
    ]
    if kept:
        imports_cfg['imports'] = kept
    else:
        base.pop('custom_imports')


def plain_base_config(cfg: Config) -> Tuple[Config, List[str], List[str]]:
    """The wrapped segmentor's config for stock mmseg, the plugin types it
    still needs and what was changed beyond the obvious.

    ``model`` is the wrapped segmentor (with the wrapper's data
    preprocessor); every pipeline loses the plugin's steps (the
    distortions, ``KeepCleanCopy``; its checked loaders become mmseg's)
    and meta keys; the test pipeline (top level and test dataloader, a
    distortion sweep unwrapped) is :func:`camera_pipeline` with mmseg's own
    loaders, the shape mmseg's ``inference_model`` and ``MMSegInferencer``
    expect; a plugin metric becomes ``IoUMetric``; a dataloader whose
    dataset is the plugin's is replaced (test) or left out (train, val);
    the plugin's hooks, runner, optimizer constructor and config variables,
    the gear runs' ``load_from`` and ``resume`` go. ``custom_imports`` of
    the plugin goes unless the segmentor itself uses a plugin type.

    Args:
        cfg (Config): a GearNN config.

    Returns:
        tuple: the base config (``cfg`` is not changed); the plugin types
        it still uses (empty: stock mmseg reads it without the plugin); a
        line per dataloader or hook replaced or left out.
    """
    wrapper = cfg.model
    if 'segmentor' not in wrapper:
        raise ValueError(
            f'{cfg.filename or "the config"}: model is a '
            f'{wrapper.get("type")}, not a wrapper with a segmentor'
        )
    names = plugin_type_names()
    test_pipeline = camera_pipeline(
        test_pipeline_of(cfg),
        loader='LoadImageFromFile',
        label_loader='LoadAnnotations',
    )
    base = copy.deepcopy(cfg)
    model = copy.deepcopy(wrapper.segmentor)
    if wrapper.get('data_preprocessor') is not None:
        model['data_preprocessor'] = copy.deepcopy(wrapper.data_preprocessor)
    base.model = model
    for key in ('custom_hooks', 'load_from', 'resume'):
        base.pop(key, None)
    for key in ('val_dataloader', 'test_dataloader'):
        _unwrap_sweep(base.get(key))
    base.test_pipeline = test_pipeline
    if base.get('test_dataloader'):
        base.test_dataloader.dataset.pipeline = copy.deepcopy(test_pipeline)
    _plain_pipelines(base._cfg_dict, names)
    notes: List[str] = []
    _plain_loaders(base, names, notes)
    _plain_runner_parts(base, names, notes)
    needed = plugin_types(base.model, names)
    _plain_custom_imports(base, keep_plugin=bool(needed))
    return base, plugin_types(base._cfg_dict, names), notes


def base_config(cfg: Config) -> Config:
    """The wrapped segmentor's config as a plain mmseg config (see
    :func:`plain_base_config`)."""
    return plain_base_config(cfg)[0]
