"""GearNNInferencer and tools/infer.py on a folder of frames and a video.

The demo GearNN config with random weights; 96x128 frames written with cv2.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from mmseg_gearnn.apis import FrameSource, GearNNInferencer
from mmseg_gearnn.distortions import build_space

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = (
    REPO_ROOT
    / 'configs'
    / 'gearnn'
    / 'gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-96x128.py'
)
SIZE = (96, 128)
NAMES = ['a', 'b', 'c']


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory) -> Path:
    cfg = Config.fromfile(str(CONFIG))
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    path = tmp_path_factory.mktemp('ckpt') / 'gearnn.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def inferencer(checkpoint) -> GearNNInferencer:
    return GearNNInferencer(str(CONFIG), str(checkpoint))


@pytest.fixture(scope='module')
def frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('frames')
    rng = np.random.RandomState(0)
    for name in NAMES:
        img = rng.randint(0, 256, (*SIZE, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f'{name}.png'), img)
    (folder / 'bad.png').write_bytes(rng.bytes(300))
    (folder / 'notes.txt').write_text('not a frame')
    return folder


def test_folder_without_metadata(inferencer, frames, tmp_path):
    with pytest.warns(UserWarning, match="'bad'"):
        result = inferencer(frames, tmp_path, overlay=True)
    for name in NAMES:
        mask = cv2.imread(str(tmp_path / 'masks' / f'{name}.png'), -1)
        assert mask.shape == SIZE and mask.dtype == np.uint8
        assert mask.max() < inferencer.model.num_classes
        assert cv2.imread(str(tmp_path / 'overlays' / f'{name}.png')).shape
    assert not (tmp_path / 'masks' / 'bad.png').exists()
    assert result['skipped'] == ['bad']
    assert result['frames_done'] == 3
    ok = [r for r in result['frames'] if r['status'] == 'ok']
    assert [r['frame'] for r in ok] == NAMES
    assert {(r['gear'], r['source'], r['type']) for r in ok} == {
        (0, 'default', 'clean')
    }
    assert result['gear_histogram'] == {'0': 3}
    # The palette of the config's dataset (ProceduralStreetDataset).
    assert inferencer.dataset_meta['classes'][0] == 'sky'
    report = json.loads((tmp_path / 'frames.json').read_text())
    assert report['summary']['skipped'] == ['bad']
    assert len(report['frames']) == 4
    with open(tmp_path / 'frames.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['frame'] for r in rows] == ['a', 'b', 'bad', 'c']
    assert rows[2]['status'] == 'skipped'


def test_folder_with_metadata(inferencer, frames, tmp_path):
    space = build_space(Config.fromfile(str(CONFIG)).model.space)
    meta = {'a': {'type': 'jpeg', 'level': 15}, 'c.png': {'type': 'clean'}}
    meta_file = tmp_path / 'meta.json'
    meta_file.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match='bad'):
        result = inferencer(frames, tmp_path / 'out', metadata=meta_file)
    by_name = {r['frame']: r for r in result['frames']}
    expected = space.record('jpeg', 15)
    assert by_name['a']['gear'] == expected['gear'] != 0
    assert (by_name['a']['type'], by_name['a']['level']) == ('jpeg', 15)
    assert by_name['a']['source'] == 'metadata'
    assert by_name['b']['source'] == 'default'
    assert (by_name['c']['gear'], by_name['c']['source']) == (0, 'metadata')

    # CSV and list forms give the same routing.
    csv_file = tmp_path / 'meta.csv'
    csv_file.write_text('frame,type,level\na,jpeg,15\nb,,\n')
    routed = inferencer.resolve_metadata(csv_file, FrameSource(frames))
    assert routed(0, 'a', 'a.png') == expected
    assert routed(1, 'b', 'b.png') is None


@pytest.mark.faults
def test_metadata_level_outside_space(inferencer, frames, tmp_path):
    meta = [None, {'type': 'jpeg', 'level': 42}]
    with pytest.raises(ValueError, match=r"frame 'b'.*valid levels"):
        inferencer(frames, tmp_path, metadata=meta)
    assert not (tmp_path / 'masks').exists()


def test_video(inferencer, tmp_path):
    video = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter_fourcc(*'MJPG'), 5, SIZE[::-1]
    )
    if not writer.isOpened():
        pytest.skip('cv2 cannot write MJPG .avi (codec unavailable)')
    for i in range(3):
        writer.write(np.full((*SIZE, 3), 60 * i, dtype=np.uint8))
    writer.release()
    capture = cv2.VideoCapture(str(video))
    readable = capture.isOpened() and capture.read()[0]
    capture.release()
    if not readable:
        pytest.skip('cv2 cannot read back the MJPG .avi')
    result = inferencer(video, tmp_path / 'out')
    names = [f'frame_{i:06d}' for i in (1, 2, 3)]
    assert [r['frame'] for r in result['frames']] == names
    for name in names:
        mask = cv2.imread(str(tmp_path / 'out' / 'masks' / f'{name}.png'), -1)
        assert mask.shape == SIZE


def test_cli(checkpoint, frames, tmp_path):
    meta_file = tmp_path / 'meta.json'
    meta_file.write_text(
        json.dumps({'b': {'type': 'brightness', 'level': 0.2}})
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / 'tools' / 'infer.py'),
            str(CONFIG),
            str(checkpoint),
            '--input',
            str(frames),
            '--out-dir',
            str(tmp_path / 'out'),
            '--metadata',
            str(meta_file),
            '--overlay',
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        # One thread: spin-waiting threads on a shared 2-core CPU are slow.
        env=dict(os.environ, OMP_NUM_THREADS='1'),
    )
    assert proc.returncode == 0, proc.stderr
    gear = build_space(Config.fromfile(str(CONFIG)).model.space).gear_id(
        'brightness', 0.2
    )
    assert f'b gear={gear} (brightness 0.2) source=metadata' in proc.stdout
    assert 'a gear=0 (clean) source=default' in proc.stdout
    assert 'bad skipped' in proc.stdout
    assert '"frames_done": 3' in proc.stdout
    assert (tmp_path / 'out' / 'overlays' / 'c.png').exists()
