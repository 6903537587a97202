"""A user config that wraps an mmseg segmentor trains gears.

The "In your own project" config (copied from docs/usage.md) around three
model families of mmseg's own configs, shrunk to run in seconds: mmseg's
inherited pipeline has no distortion transform, so without help every
sample runs on the clean gear and training trains nothing.
:func:`complete_gear_config` inserts the transform; a Runner built without
it stops with an error naming the transform to add.
"""

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from user_configs import (
    CROP,
    FAMILIES,
    PSPNET,
    own_project_config,
    run_options,
)

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.engine import complete_gear_config
from mmseg_gearnn.utils import set_crop_size

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


def _steps(cfg, dataloader: str) -> list:
    return [step['type'] for step in cfg[dataloader].dataset.pipeline]


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
        cfg[k].dataset.pipeline[-1]
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
