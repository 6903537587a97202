"""A user config that wraps an mmseg segmentor trains gears.

The "In your own project" config (copied from docs/usage.md) around three
model families of mmseg's own configs, shrunk to run in seconds: mmseg's
inherited pipeline has no distortion transform, so without help every
sample runs on the clean gear and training trains nothing.
:func:`complete_gear_config` inserts the transform; a Runner built without
it stops with an error naming the transform to add.
"""

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmseg.registry import DATASETS
from user_configs import (
    CROP,
    FAMILIES,
    PSPNET,
    own_project_config,
    run_options,
)

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.distortions import functional
from mmseg_gearnn.engine import (
    add_gear_distortions,
    complete_gear_config,
    warn_jitter_after_distortion,
)
from mmseg_gearnn.utils import set_crop_size, set_distortion_space

MAX_ITERS = 3
# The BN re-estimation after training, at its smallest: a few batches.
LIGHT_BN_RECALIBRATION = dict(
    type='GearBNRecalibrationHook', batches_per_gear=1, max_batches=2
)


def _config(tmp_path, family: str, max_iters: int = MAX_ITERS) -> Config:
    spec = FAMILIES[family]
    path = own_project_config(tmp_path / f'{family}.py', spec['config'])
    data_root = spec['layout'](tmp_path / 'data')
    cfg = Config.fromfile(str(path))
    cfg.merge_from_dict(spec['options'])
    cfg.merge_from_dict(run_options(data_root, tmp_path / 'work', max_iters))
    set_crop_size(cfg, CROP)
    cfg.gearnn_hooks = [
        LIGHT_BN_RECALIBRATION
        if hook['type'] == 'GearBNRecalibrationHook'
        else hook
        for hook in cfg.gearnn_hooks
    ]
    return cfg


def _pipeline(cfg, dataloader: str) -> list:
    """The pipeline of a dataloader's dataset (inside a sweep too)."""
    dataset = cfg[dataloader].dataset
    while 'pipeline' not in dataset:
        dataset = dataset.dataset
    return dataset.pipeline


def _steps(cfg, dataloader: str) -> list:
    return [step['type'] for step in _pipeline(cfg, dataloader)]


def test_complete_gear_config_distorts_where_a_camera_does(tmp_path):
    cfg = _config(tmp_path, 'pspnet')
    changes = complete_gear_config(cfg)
    assert 'train_dataloader: RandomDistortion inserted after ' in (changes[0])
    train = _steps(cfg, 'train_dataloader')
    # Right after loading, before any resize.
    assert train[:3] == [
        'LoadImageFromFile',
        'RandomDistortion',
        'LoadAnnotations',
    ]
    distortion = cfg.train_dataloader.dataset.pipeline[1]
    assert distortion['clean_prob'] == 0.0
    assert distortion['draw_every'] == cfg.train_dataloader.batch_size
    assert distortion['space'] == cfg.model.space
    for key in ('val_dataloader', 'test_dataloader'):
        assert _steps(cfg, key)[:2] == [
            'LoadImageFromFile',
            'RequestedDistortion',
        ]
    assert cfg.tta_pipeline[1]['type'] == 'RequestedDistortion'
    packs = [
        _pipeline(cfg, k)[-1]
        for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]
    for pack in packs:
        assert pack['type'] == 'PackSegInputs'
        assert (
            'distortion' in pack['meta_keys']
            and 'img_path' in pack['meta_keys']
        )
    hooks = [hook['type'] for hook in cfg.custom_hooks]
    assert hooks[0] == 'DistortedInputsGuardHook'
    assert {'FrozenBaseGuardHook', 'GearCheckpointHook'} <= set(hooks)
    # A second call changes nothing: a config that distorts is kept.
    assert complete_gear_config(cfg) == []


def test_a_plain_mmseg_config_is_left_alone(tmp_path):
    path = tmp_path / 'plain.py'
    path.write_text(f'_base_ = [{PSPNET!r}]\n')
    cfg = Config.fromfile(str(path))
    before = cfg.to_dict()
    assert complete_gear_config(cfg) == []
    assert cfg.to_dict() == before


def test_runner_without_the_transform_stops_naming_it(tmp_path):
    """The docs' config built straight into a Runner (no tool, nothing
    completed) trained nothing for as long as it ran and exited cleanly."""
    runner = Runner.from_cfg(_config(tmp_path, 'pspnet'))
    with pytest.raises(RuntimeError) as err:
        runner.train()
    message = str(err.value)
    assert 'gear training without a distortion transform' in message
    assert "dict(type='RandomDistortion', space=_base_.distortion_space" in (
        message
    )
    assert 'complete_gear_config(cfg)' in message
    assert runner.iter == 0


def test_a_run_that_trains_no_gear_stops(tmp_path):
    """A distortion transform that leaves every image clean."""
    cfg = _config(tmp_path, 'pspnet', max_iters=4)
    complete_gear_config(cfg)
    cfg.train_dataloader.dataset.pipeline[1]['clean_prob'] = 1.0
    cfg.custom_hooks[0]['max_clean_iters'] = 2
    runner = Runner.from_cfg(cfg)
    with pytest.raises(RuntimeError, match='no gear trained in the first 2'):
        runner.train()
    assert runner.iter == 1  # stopped after its second iteration


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_family_trains_gears_on_a_frozen_base(tmp_path, family):
    cfg = _config(tmp_path, family)
    complete_gear_config(cfg)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    # Initialised once here; the Runner's own call is then a no-op.
    model.init_weights()
    base = {k: v.clone() for k, v in model.segmentor.state_dict().items()}
    gears = {
        gear: {k: v.clone() for k, v in model.gear_bank.tensors(gear).items()}
        for gear in range(1, model.gear_bank.num_gears)
    }
    runner.train()

    model.restore_base()
    after = model.segmentor.state_dict()
    assert base.keys() == after.keys()
    for name, tensor in base.items():
        assert torch.equal(tensor, after[name]), f'base {name} changed'
    trainable = {name for name, _ in model.segmentor.named_parameters()}
    changed = [
        gear
        for gear, start in gears.items()
        if any(
            not torch.equal(start[name], tensor)
            for name, tensor in model.gear_bank.tensors(gear).items()
            if name in trainable
        )
    ]
    assert changed, f'{family}: no gear parameter changed'
    assert (tmp_path / 'work' / 'gears.pth').is_file()


def test_a_distilled_user_config_keeps_the_clean_frame(tmp_path):
    """The distilled recipe on a user config: its loss compares each
    distorted frame with the clean one, so the frame is distorted after
    the crop and its clean copy packed; without that the first training
    step failed for want of a clean copy."""
    cfg = _config(tmp_path, 'pspnet')
    cfg.model.type = 'DistilledGearNNSegmentor'
    changes = complete_gear_config(cfg)
    assert 'train_dataloader: KeepCleanCopy inserted before ' in (
        '\n'.join(changes)
    )
    train = _steps(cfg, 'train_dataloader')
    assert train[-3:] == [
        'KeepCleanCopy',
        'RandomDistortion',
        'PackSegInputs',
    ]
    assert (
        'clean_img' in cfg.train_dataloader.dataset.pipeline[-1]['meta_keys']
    )
    # Testing distorts where a camera does, as for plain gears.
    assert _steps(cfg, 'test_dataloader')[1] == 'RequestedDistortion'
    assert complete_gear_config(cfg) == []

    runner = Runner.from_cfg(cfg)
    model = runner.model
    model.init_weights()
    data = model.data_preprocessor(next(iter(runner.train_dataloader)), True)
    losses = model(**data, mode='loss')
    distill = losses['loss_distill']
    assert torch.isfinite(distill) and distill > 0


SMALL_SPACE = dict(distortions=dict(brightness=[0.5], jpeg=[10]))


def test_a_user_config_tests_every_gear(tmp_path):
    """tools/test.py on a gear config derived from a plain mmseg config
    scored clean frames only (no sweep, every sample on the clean gear,
    the base) while the user believed it measured robustness."""
    cfg = _config(tmp_path, 'pspnet')
    set_distortion_space(cfg, SMALL_SPACE)
    changes = add_gear_distortions(cfg)  # what tools/test.py calls
    for mode in ('val', 'test'):
        assert cfg[f'{mode}_dataloader'].dataset.type == (
            'DistortionSweepDataset'
        )
        assert cfg[f'{mode}_evaluator']['type'] == 'DistortionIoUMetric'
        assert (
            f'{mode}_dataloader: CityscapesDataset wrapped in a '
            'DistortionSweepDataset (clean and every (type, level))'
        ) in changes
    assert add_gear_distortions(cfg) == []  # a swept config is kept

    metrics = Runner.from_cfg(cfg).test()
    for key in ('clean', 'brightness/0.5', 'jpeg/10'):
        assert np.isfinite(metrics[f'{key}/mIoU']), key


def test_a_distilled_clean_copy_sees_the_flip(tmp_path):
    """A distilled user config whose pipeline distorts before RandomFlip:
    the clean copy went right before that distortion, so the frame was
    flipped (and jittered) and its clean copy was not; the loss compared
    mirrored frames."""
    cfg = _config(tmp_path, 'pspnet')
    cfg.model.type = 'DistilledGearNNSegmentor'
    set_distortion_space(cfg, dict(distortions=dict(brightness=[0.5])))
    pipeline = cfg.train_dataloader.dataset.pipeline
    # Where a camera distorts, right after loading.
    pipeline.insert(
        1,
        dict(type='RandomDistortion', space=cfg.model.space, clean_prob=0.0),
    )
    for step in pipeline:
        if step['type'] == 'RandomFlip':
            step['prob'] = 1.0
    changes = complete_gear_config(cfg)
    assert (
        'train_dataloader: KeepCleanCopy, RandomDistortion moved after '
        'PhotoMetricDistortion, so that the clean copy sees every step the '
        'distorted frame does'
    ) in changes
    assert _steps(cfg, 'train_dataloader')[-4:] == [
        'PhotoMetricDistortion',
        'KeepCleanCopy',
        'RandomDistortion',
        'PackSegInputs',
    ]

    init_default_scope('mmseg')
    sample = DATASETS.build(cfg.train_dataloader.dataset)[0]
    meta = sample['data_samples'].metainfo
    assert meta['flip']
    img = sample['inputs'].permute(1, 2, 0).numpy()
    # Pixel-aligned: the frame is its clean copy, distorted.
    assert np.array_equal(img, functional.brightness(meta['clean_img'], 0.5))


def test_jitter_after_the_distortion_is_warned(tmp_path):
    """mmseg's training pipelines jitter colours after the flip: a gear
    config completed from one distorted before the jitter, so gears
    trained on jittered distortions, and nothing said so."""
    cfg = _config(tmp_path, 'pspnet')
    log = tmp_path / 'run.log'
    MMLogger.get_instance('jitter_after_distortion', log_file=str(log))
    complete_gear_config(cfg)
    text = log.read_text()
    assert 'WARNING' in text
    assert (
        'train_dataloader: PhotoMetricDistortion follows RandomDistortion'
    ) in text

    # The distilled recipe distorts after the jitter: nothing to warn.
    cfg = _config(tmp_path, 'pspnet')
    cfg.model.type = 'DistilledGearNNSegmentor'
    complete_gear_config(cfg)
    assert warn_jitter_after_distortion(cfg) == []
