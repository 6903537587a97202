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
