"""Every config under configs/ loads, and its model builds on CPU."""

from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_gearnn  # noqa: F401

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'
# Full configs: those that define a model (bases only hold parts).
CONFIGS = sorted(
    p for p in CONFIG_DIR.rglob('*.py') if '_base_' not in p.parts
)


def test_configs_found():
    assert len(CONFIGS) >= 4, CONFIGS


def _no_pretrained(model_cfg):
    model_cfg.pop('pretrained', None)
    if 'backbone' in model_cfg:
        model_cfg.backbone.pop('init_cfg', None)
    if 'segmentor' in model_cfg:
        _no_pretrained(model_cfg.segmentor)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_builds(path):
    cfg = Config.fromfile(str(path))
    assert cfg.custom_imports['imports'] == ['mmseg_gearnn']
    assert 'distortion_space' in cfg
    _no_pretrained(cfg.model)
    init_default_scope('mmseg')
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    assert sum(p.numel() for p in model.parameters()) > 0
    if cfg.model.type == 'GearNNSegmentor':
        space = mmseg_gearnn.build_space(cfg.distortion_space)
        assert model.gear_bank.num_gears == space.num_gears
        assert 'custom_hooks' in cfg and any(
            h['type'] == 'FrozenBaseGuardHook' for h in cfg.custom_hooks
        )


def test_custom_imports_only_in_runtime_base():
    defining = [
        p.relative_to(CONFIG_DIR).as_posix()
        for p in CONFIG_DIR.rglob('*.py')
        if 'custom_imports' in p.read_text()
    ]
    assert defining == ['_base_/gearnn_runtime.py']


def test_set_data_root_reaches_every_dataloader():
    from mmseg_gearnn.utils import set_data_root

    cfg = Config.fromfile(
        str(
            CONFIG_DIR
            / 'gearnn'
            / (
                'gearnn_deeplabv3plus_efficientnet-lite0_1xb8-300_'
                'camvid-240x320.py'
            )
        )
    )
    assert set_data_root(cfg, '/elsewhere/camvid') == 3
    assert cfg.train_dataloader.dataset.data_root == '/elsewhere/camvid'
    assert cfg.val_dataloader.dataset.data_root == '/elsewhere/camvid'
    # The sweep wraps the val dataset.
    assert cfg.test_dataloader.dataset.dataset.data_root == '/elsewhere/camvid'
    procedural = Config.fromfile(
        str(
            CONFIG_DIR
            / 'gearnn'
            / 'deeplabv3plus_r18-tiny_1xb8-1k_procedural-96x128.py'
        )
    )
    with pytest.raises(ValueError, match='no dataloader of this config'):
        set_data_root(procedural, '/x')


GEARNN_CAMVID = (
    CONFIG_DIR
    / 'gearnn'
    / 'gearnn_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-240x320.py'
)
TEN_LEVELS = CONFIG_DIR / '_base_' / 'distortions' / 'camvid_10_levels.py'


def _steps(cfg, key):
    dataset = cfg[key].dataset
    return {s['type']: s for s in dataset.get('dataset', dataset).pipeline}


def test_set_crop_size_moves_every_resolution_setting():
    from mmseg_gearnn.utils import set_crop_size

    cfg = Config.fromfile(str(GEARNN_CAMVID))
    assert tuple(cfg.crop_size) == (240, 320)
    assert set_crop_size(cfg, (360, 480)) >= 5
    train = _steps(cfg, 'train_dataloader')
    assert tuple(train['RandomCrop']['crop_size']) == (360, 480)
    # Resize scales are (w, h) and grow with the crop: 1.5x here.
    assert tuple(train['RandomResize']['scale']) == (720, 540)
    for key in ('val_dataloader', 'test_dataloader'):
        assert tuple(_steps(cfg, key)['Resize']['scale']) == (480, 360)
    # The wrapper's and the wrapped segmentor's preprocessors both pad to
    # the new size.
    assert tuple(cfg.model.data_preprocessor['size']) == (360, 480)
    assert tuple(cfg.model.segmentor.data_preprocessor['size']) == (360, 480)
    assert tuple(cfg.crop_size) == (360, 480)
    for bad in ((360,), (360, 0), (360.0, 480), 360):
        with pytest.raises(ValueError, match='two positive ints'):
            set_crop_size(cfg, bad)
    with pytest.raises(ValueError, match='no top-level crop_size'):
        set_crop_size(Config(dict(model=cfg.model)), (360, 480))


def test_set_distortion_space_replaces_every_copy():
    from mmseg_gearnn.utils import set_distortion_space

    cfg = Config.fromfile(str(GEARNN_CAMVID))
    ten = Config.fromfile(str(TEN_LEVELS)).distortion_space.to_dict()
    spaces = lambda: [  # noqa: E731
        cfg.distortion_space,
        cfg.model.space,
        cfg.val_evaluator.space,
        cfg.test_evaluator.space,
        cfg.test_dataloader.dataset.space,
        _steps(cfg, 'train_dataloader')['RandomDistortion']['space'],
        _steps(cfg, 'val_dataloader')['RequestedDistortion']['space'],
        _steps(cfg, 'test_dataloader')['RequestedDistortion']['space'],
        # the top-level pipelines the dataloaders were copied from
        cfg.train_pipeline[-2]['space'],
        cfg.test_pipeline[2]['space'],
    ]
    assert all(s['distortions'] != ten['distortions'] for s in spaces())
    assert set_distortion_space(cfg, ten) == len(spaces())
    for space in spaces():
        assert space['distortions'] == ten['distortions']
    init_default_scope('mmseg')
    _no_pretrained(cfg.model)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    # clean + 4 types x 10 levels
    assert model.gear_bank.num_gears == 41
    with pytest.raises(ValueError, match='distortions'):
        set_distortion_space(cfg, dict(snap='error'))
    with pytest.raises(ValueError, match='no distortion space'):
        set_distortion_space(Config(dict(model=dict(type='X'))), ten)


def test_ten_level_space_holds_the_five_level_one():
    five = Config.fromfile(
        str(CONFIG_DIR / '_base_' / 'distortions' / 'camvid.py')
    ).distortion_space.distortions
    ten = Config.fromfile(str(TEN_LEVELS)).distortion_space.distortions
    assert list(ten) == list(five)
    for dtype, levels in ten.items():
        assert len(levels) == 10
        assert set(five[dtype]) <= set(levels)
        # mild to harsh, ending at the five-level space's harshest level
        assert levels[-1] == five[dtype][-1]
    mmseg_gearnn.build_space(Config.fromfile(str(TEN_LEVELS)).distortion_space)
