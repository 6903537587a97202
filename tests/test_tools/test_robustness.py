"""tools/robustness.py: the sweep of one checkpoint over the distortion
space, written as table, CSV, JSON and plot."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = (
    REPO_ROOT
    / 'configs/gearnn/deeplabv3plus_r18-tiny_1xb8-1k_procedural-96x128.py'
)
SHRINK = [
    'test_dataloader.dataset.dataset.num_samples=2',
    'test_dataloader.dataset.dataset.img_size=(32,48)',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'test_dataloader.batch_size=2',
]


def _random_checkpoint(path: Path) -> None:
    init_default_scope('mmseg')
    cfg = Config.fromfile(CONFIG)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)


def test_one_row_per_level_in_space_order(tmp_path):
    ckpt = tmp_path / 'model.pth'
    _random_checkpoint(ckpt)
    first = tmp_path / 'first'
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / 'tools/robustness.py'),
            str(CONFIG),
            str(ckpt),
            '--work-dir',
            str(first),
            '--name',
            'random',
            '--cfg-options',
            *SHRINK,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    space = Config.fromfile(CONFIG).distortion_space.distortions
    expected = [('clean', '')] + [
        (dtype, str(level))
        for dtype, levels in space.items()
        for level in levels
    ]
    with open(first / 'robustness.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [(r['type'], r['level']) for r in rows] == expected
    assert {r['method'] for r in rows} == {'random'}
    for row in rows:
        assert 0.0 <= float(row['mIoU']) <= 100.0

    table = (first / 'robustness.md').read_text().strip().splitlines()
    assert len(table) == 3  # header, rule, one method
    assert table[2].startswith('| random |')
    report = json.loads((first / 'robustness.json').read_text())
    assert list(report['results']) == ['random']
    assert (first / 'robustness.png').stat().st_size > 0
    assert (first / 'levels.json').is_file()


def test_compare_puts_methods_side_by_side(tmp_path):
    levels = {'jpeg': {'30': 40.0, '5': 20.0}}
    earlier = tmp_path / 'earlier.json'
    earlier.write_text(json.dumps({'levels': levels, 'clean': 50.0}))
    from mmseg_gearnn.evaluation import load_reports, write_robustness_report

    results, clean = load_reports({'earlier': earlier})
    paths = write_robustness_report(
        {'now': {'jpeg': {'30': 45.0, '5': 30.0}}, **results},
        tmp_path / 'out',
        {'now': 52.0, **clean},
    )
    with open(paths['csv'], newline='') as f:
        rows = [
            (r['method'], r['type'], r['level']) for r in csv.DictReader(f)
        ]
    assert rows == [
        ('now', 'clean', ''),
        ('now', 'jpeg', '30'),
        ('now', 'jpeg', '5'),
        ('earlier', 'clean', ''),
        ('earlier', 'jpeg', '30'),
        ('earlier', 'jpeg', '5'),
    ]
