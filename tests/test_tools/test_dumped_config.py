"""``tools/test.py`` with the config that training dumped into its work
dir gives the scores of the original config.

mmengine's dump sorts dict keys, so the dumped config lists the demo's
distortion types alphabetically and numbers the gears in another order.
Gears are matched by (type, level) (the checkpoint records its gear
table): every (type, level) is scored with its own gear either way.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from mmseg_gearnn.distortions import build_space

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
CONFIG = (
    REPO_ROOT
    / 'configs'
    / 'gearnn'
    / 'gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-96x128.py'
)
TIMEOUT = 300
SIZE = '(32,32)'

DATA = [
    f'train_dataloader.dataset.img_size={SIZE}',
    'train_dataloader.dataset.num_samples=4',
    'train_dataloader.batch_size=2',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_dataloader.dataset.pipeline.1.draw_every=2',
    'val_dataloader.dataset.num_samples=1',
    f'val_dataloader.dataset.img_size={SIZE}',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'test_dataloader.dataset.dataset.num_samples=2',
    f'test_dataloader.dataset.dataset.img_size={SIZE}',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    f'model.data_preprocessor.size={SIZE}',
]


def _run(tool: str, *args) -> str:
    proc = subprocess.run(
        [sys.executable, str(TOOLS / tool), *map(str, args)],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1'),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def _scores(config, checkpoint, work_dir: Path) -> dict:
    """tools/test.py's metrics, from the json it writes to its work dir
    (the data shrunk as in training: the dumped config holds the training's
    options, the original does not)."""
    _run(
        'test.py',
        config,
        checkpoint,
        '--work-dir',
        work_dir,
        '--cfg-options',
        *DATA,
    )
    logs = [
        p
        for p in work_dir.glob('*/*.json')
        if p.parent.name == p.stem  # <timestamp>/<timestamp>.json
    ]
    assert len(logs) == 1, logs
    metrics = json.loads(logs[0].read_text().splitlines()[-1])
    return {k: v for k, v in metrics.items() if 'IoU' in k or 'mPC' in k}


@pytest.mark.faults
def test_dumped_config_scores_every_level_as_the_original(tmp_path):
    work_dir = tmp_path / 'train'
    _run(
        'train.py',
        CONFIG,
        '--work-dir',
        work_dir,
        '--cfg-options',
        *DATA,
        # No base checkpoint: the gears adapt the init weights (opt-in).
        'model.allow_random_base=True',
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=1000',
        'default_hooks.checkpoint.interval=2',
        'custom_hooks.2.batches_per_gear=1',
        'custom_hooks.2.max_batches=13',
    )
    dumped = work_dir / CONFIG.name
    checkpoint = work_dir / 'iter_2.pth'
    assert dumped.is_file() and checkpoint.is_file()
    ours = build_space(Config.fromfile(str(CONFIG)).model.space)
    theirs = build_space(Config.fromfile(str(dumped)).model.space)
    # The case at hand: the same gears, numbered in another order.
    assert ours.gears() != theirs.gears() and ours.same_gears(theirs)

    original = _scores(CONFIG, checkpoint, tmp_path / 'original')
    from_dump = _scores(dumped, checkpoint, tmp_path / 'dumped')
    levels = [k for k in original if '@' in k or '/' in k]
    assert len(levels) >= ours.num_gears - 1, sorted(original)
    assert from_dump == original
