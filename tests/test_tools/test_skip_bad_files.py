"""``tools/test.py --skip-bad-files``: an evaluation that meets a corrupt
image or label file reports it and goes on, instead of stopping."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS, TRANSFORMS
from toys import tiny_segmentor_source

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.utils import skip_bad_files

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_TOOL = REPO_ROOT / 'tools' / 'test.py'
RUNTIME = REPO_ROOT / 'configs' / '_base_' / 'gearnn_runtime.py'
H, W = 32, 48

CONFIG = """
_base_ = [{runtime!r}, 'mmseg::_base_/default_runtime.py']
{model}test_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CamVidDataset', data_root={root!r},
        data_prefix=dict(img_path='val', seg_map_path='valannot'),
        pipeline=[dict(type='LoadCheckedImageFromFile'),
                  dict(type='LoadCheckedAnnotations'),
                  dict(type='PackSegInputs')]))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')
default_hooks = dict(visualization=dict(type='SegVisualizationHook'))
""".replace('{model}', tiny_segmentor_source('model', None, 11))


def _camvid(root: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    for folder in ('val', 'valannot'):
        (root / folder).mkdir(parents=True)
    for i in range(count):
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        label = rng.integers(0, 11, (H, W), dtype=np.uint8)
        assert cv2.imwrite(str(root / 'val' / f'val_{i:03d}.png'), img)
        assert cv2.imwrite(str(root / 'valannot' / f'val_{i:03d}.png'), label)
    return root


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('skip')
    init_default_scope('mmseg')
    torch.manual_seed(0)
    config = root / 'config.py'
    config.write_text(CONFIG.format(runtime=str(RUNTIME), root='ROOT'))
    cfg = Config.fromfile(str(config))
    checkpoint = root / 'model.pth'
    model = MODELS.build(cfg.model)
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    return root, checkpoint


def _test(root, checkpoint, data_root, *extra):
    config = root / f'config_{data_root.name}.py'
    config.write_text(CONFIG.format(runtime=str(RUNTIME), root=str(data_root)))
    work_dir = root / f'work_{data_root.name}_{len(extra)}'
    proc = subprocess.run(
        [
            sys.executable,
            str(TEST_TOOL),
            str(config),
            str(checkpoint),
            '--work-dir',
            str(work_dir),
            *extra,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
    )
    return proc, proc.stdout + proc.stderr, work_dir


def _metrics(output: str) -> str:
    found = re.findall(
        r'Iter\(test\) \[\d+/\d+\]\s+(aAcc:.*?mAcc: \S+)', output
    )
    assert found, output[-3000:]
    return found[-1]


@pytest.mark.faults
def test_evaluation_skips_and_reports_bad_files(setup):
    root, checkpoint = setup
    # Frames 1 (image) and 2 (label) are corrupt; 0 and 3 are fine.
    bad = _camvid(root / 'bad', 4)
    _truncate(bad / 'val' / 'val_001.png')
    _truncate(bad / 'valannot' / 'val_002.png')
    # The same frames without the bad two.
    good = _camvid(root / 'good', 4)
    for i in (1, 2):
        for folder in ('val', 'valannot'):
            (good / folder / f'val_{i:03d}.png').unlink()

    # By default the evaluation stops, naming the file.
    proc, out, _ = _test(root, checkpoint, bad)
    assert proc.returncode != 0
    assert f'image file is corrupt or truncated: {bad}/val/val_001.png' in out

    proc, out, work_dir = _test(root, checkpoint, bad, '--skip-bad-files')
    assert proc.returncode == 0, out[-3000:]
    assert '2 bad file(s) skipped' in out
    report = json.loads((work_dir / 'skipped_files.json').read_text())
    assert [r['path'] for r in report] == [
        str(bad / 'val' / 'val_001.png'),
        str(bad / 'valannot' / 'val_002.png'),
    ]
    assert 'image file is corrupt' in report[0]['reason']
    assert 'label file is corrupt' in report[1]['reason']

    # The skipped samples add nothing: the metrics are those of the good
    # frames alone.
    proc, clean_out, _ = _test(root, checkpoint, good)
    assert proc.returncode == 0, clean_out[-3000:]
    assert _metrics(out) == _metrics(clean_out)


@pytest.mark.faults
def test_skip_transforms_record_the_file(tmp_path):
    root = _camvid(tmp_path, 1)
    img_path = root / 'val' / 'val_000.png'
    seg_path = root / 'valannot' / 'val_000.png'
    label = cv2.imread(str(seg_path), 0)
    label[0, 0] = 40  # outside the 11 classes
    assert cv2.imwrite(str(seg_path), label)
    load_img = TRANSFORMS.build(
        dict(type='LoadCheckedImageFromFile', on_error='skip')
    )
    load_seg = TRANSFORMS.build(
        dict(type='LoadCheckedAnnotations', num_classes=11, on_error='skip')
    )
    info = dict(
        img_path=str(img_path),
        seg_map_path=str(seg_path),
        reduce_zero_label=False,
        seg_fields=[],
    )
    with pytest.warns(UserWarning, match=r'values \[40\]'):
        results = load_seg(load_img(dict(info)))
    assert results['skipped']['path'] == str(seg_path)
    assert results['img'].shape == (H, W, 3)  # the image itself is fine
    assert (results['gt_seg_map'] == 255).all()

    _truncate(img_path)
    with pytest.warns(UserWarning, match='image file is corrupt'):
        results = load_seg(load_img(dict(info)))
    assert results['skipped']['path'] == str(img_path)
    assert not results['img'].any()
    assert results['gt_seg_map'].shape == results['img'].shape[:2]
    assert (results['gt_seg_map'] == 255).all()

    with pytest.raises(ValueError, match='on_error must be one of'):
        TRANSFORMS.build(dict(type='LoadCheckedImageFromFile', on_error='x'))
    # The tool's switch needs checked loaders to switch.
    cfg = Config(
        dict(
            test_dataloader=dict(
                dataset=dict(pipeline=[dict(type='LoadImageFromFile')])
            )
        )
    )
    with pytest.raises(ValueError, match='no file is checked'):
        skip_bad_files(cfg)
