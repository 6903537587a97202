"""The configs for users' own projects, copied from docs/usage.md (and the
one README.md shows) and run as a user runs them, so that they cannot drift
from what works."""

import os
import subprocess
import sys

from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from user_configs import (
    FAMILIES,
    README,
    REPO_ROOT,
    TINY_PSPNET,
    as_cli,
    cityscapes_layout,
    doc_block,
    own_project_config,
    run_options,
)

import mmseg_gearnn  # noqa: F401

TIMEOUT = 300


def test_own_project_config_trains_gears_with_tools_train(tmp_path):
    config = own_project_config(tmp_path / 'my_pspnet_gears.py')
    data_root = cityscapes_layout(tmp_path / 'cityscapes')
    work_dir = tmp_path / 'work'
    options = {
        **FAMILIES['pspnet']['options'],
        **run_options(data_root, work_dir, max_iters=2),
        **TINY_PSPNET,
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / 'tools' / 'train.py'),
            str(config),
            '--cfg-options',
            *as_cli(options),
        ],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONUNBUFFERED='1'),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert (
        'train_dataloader: RandomDistortion inserted after LoadImageFromFile'
        in out
    )
    assert "'distortion' added to PackSegInputs' meta_keys" in out
    assert 'custom_hooks: FrozenBaseGuardHook added' in out
    assert 'Iter(train) [2/2]' in out and 'decode.loss_ce' in out
    assert 'loss_no_distorted_samples' not in out
    assert (work_dir / 'gears.pth').is_file()


def test_readme_shows_the_tested_own_project_config():
    assert doc_block('## Use it', index=0, doc=README) == doc_block(
        '### In your own project'
    )


def test_swap_the_backbone_of_a_gear_config(tmp_path):
    snippet = doc_block('### In your own project', index=1)
    path = tmp_path / 'my_r101_gears.py'
    path.write_text(
        snippet.replace('path/to/mmseg_gearnn/', f'{REPO_ROOT.as_posix()}/')
    )
    cfg = Config.fromfile(str(path))
    assert cfg.model.type == 'DistilledGearNNSegmentor'  # the recipe's
    assert cfg.model.segmentor.backbone.depth == 101
    cfg.model.segmentor.pretrained = None  # nothing is downloaded
    init_default_scope('mmseg')
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    assert len(model.segmentor.backbone.layer3) == 23  # ResNet-101
