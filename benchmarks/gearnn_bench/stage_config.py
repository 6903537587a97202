"""The config a stage runs: a method's config at the profile's
resolution, distortion space, data subset and schedule."""

import copy
from typing import Optional

from mmengine.config import Config

from mmseg_gearnn.utils import (
    set_crop_size,
    set_data_root,
    set_distortion_space,
)

from .profiles import BenchmarkProfile


def set_schedule(cfg: Config, iters: int) -> None:
    """Shorten or lengthen ``cfg``'s iteration-based schedule to ``iters``:
    training length, validation and checkpoint intervals, and the
    learning-rate schedulers (a warm-up that would not end is dropped)."""
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    old = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.default_hooks.checkpoint.interval = iters
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    kept = []
    for sched in schedulers:
        sched = copy.deepcopy(sched)
        begin, end = sched.get('begin', 0), sched.get('end', old)
        if end >= old:
            end = iters
        if begin >= iters or end > iters:
            continue
        sched['begin'], sched['end'] = begin, end
        kept.append(sched)
    cfg.param_scheduler = kept


def _dataloader_dataset(cfg: Config, key: str):
    dataset = cfg[key]['dataset']
    # A DistortionSweepDataset wraps the real dataset.
    return dataset['dataset'] if 'dataset' in dataset else dataset


def set_transform_options(cfg: Config, options: dict) -> None:
    """Set ``{'Transform.arg': value}`` options on every transform of that
    type in the training pipeline.

    Raises:
        ValueError: when the training pipeline has no such transform.
    """
    pipeline = cfg.train_dataloader.dataset.pipeline
    for option, value in options.items():
        transform, arg = option.split('.', 1)
        steps = [t for t in pipeline if t['type'] == transform]
        if not steps:
            raise ValueError(
                f'option {option!r}: the training pipeline has no '
                f'{transform} (it has {[t["type"] for t in pipeline]})'
            )
        for step in steps:
            step[arg] = value


def is_transform_option(option: str) -> bool:
    """Whether ``option`` names a transform's argument (``'Type.arg'``),
    not a config key: config keys start in lower case."""
    return option[:1].isupper()


def profiled_config(
    config: str, profile: BenchmarkProfile, options: Optional[dict] = None
) -> Config:
    """``config`` with ``options`` at the profile's resolution and
    distortion space: what a stage runs, before paths and schedule."""
    cfg = Config.fromfile(config)
    options = dict(options or {})
    transform_options = {
        k: options.pop(k) for k in list(options) if is_transform_option(k)
    }
    if options:
        cfg.merge_from_dict(options)
    if transform_options:
        set_transform_options(cfg, transform_options)
    if profile.crop_size is not None:
        set_crop_size(cfg, tuple(profile.crop_size))
    if profile.distortion_space is not None:
        set_distortion_space(cfg, profile.distortion_space)
    return cfg


def set_splits(
    cfg: Config, fit_file: str, eval_split: str, tune_file: str
) -> None:
    """Train on the frames listed in ``fit_file``; evaluate on ``val``, or,
    with ``eval_split='tune'``, on the ``train`` frames of ``tune_file``
    (paths absolute: ``ann_file`` lists frame names without suffix)."""
    _dataloader_dataset(cfg, 'train_dataloader')['ann_file'] = fit_file
    if eval_split == 'tune':
        for key in ('val_dataloader', 'test_dataloader'):
            dataset = _dataloader_dataset(cfg, key)
            dataset['data_prefix'] = dict(
                img_path='train', seg_map_path='trainannot'
            )
            dataset['ann_file'] = tune_file
    elif eval_split != 'val':
        raise ValueError(
            f"eval_split must be 'val' or 'tune', not {eval_split!r}"
        )


def stage_config(
    config: str,
    work_dir: str,
    data_root: str,
    profile: BenchmarkProfile,
    iters: Optional[int],
    options: Optional[dict] = None,
) -> Config:
    """``config`` pointed at ``data_root``, shrunk to ``profile``."""
    cfg = profiled_config(config, profile, options)
    set_data_root(cfg, data_root)
    cfg.work_dir = work_dir
    if iters is not None:
        set_schedule(cfg, iters)
    subsets = (
        ('train_dataloader', profile.train_images),
        ('val_dataloader', profile.val_images),
        ('test_dataloader', profile.val_images),
    )
    for key, count in subsets:
        loader = cfg[key]
        loader['num_workers'] = profile.num_workers
        loader['persistent_workers'] = profile.num_workers > 0
        if count is not None:
            _dataloader_dataset(cfg, key)['indices'] = count
    if profile.batch_size is not None:
        cfg.train_dataloader.batch_size = profile.batch_size
    for hook in cfg.get('custom_hooks', []):
        if hook['type'] == 'GearBNRecalibrationHook':
            hook['batches_per_gear'] = profile.bn_batches_per_gear
            hook['max_batches'] = profile.bn_max_batches
    # The benchmark logs little: one line per 25 iterations.
    cfg.default_hooks.logger.interval = 25
    return cfg
