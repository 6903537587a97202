"""GearNNInferencer and tools/infer.py on a folder of frames and a video,
and its predictions against the test loop's on the same distorted frames.

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
from mmengine.runner import Runner, load_checkpoint
from mmseg.registry import MODELS

from mmseg_gearnn.apis import FrameSource, GearNNInferencer
from mmseg_gearnn.datasets.procedural import ProceduralStreetDataset
from mmseg_gearnn.distortions import build_space, distort

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
            '--batch-size',
            '2',
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


# -- inference matches evaluation ---------------------------------------------
# Frames at the camera's size; the test pipeline resizes them to half, as a
# model evaluated at a lower resolution than its camera's is.
MODEL_SIZE = (48, 64)
CAMERA_GEARS = [('clean', None), ('jpeg', 15), ('brightness', 0.2)]
CAMERA_FRAMES = 3


def _camera_config(root: Path, distortion=('clean', None)) -> Config:
    """The demo GearNN config whose test set is a folder of frames, with
    the camera's distortion before the resize, as tools/test.py runs it."""
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.data_preprocessor.size = MODEL_SIZE
    dtype, level = distortion
    cfg.test_dataloader = dict(
        batch_size=2,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='BaseSegDataset',
            data_root=str(root),
            data_prefix=dict(img_path='img', seg_map_path='ann'),
            img_suffix='.png',
            seg_map_suffix='.png',
            metainfo=ProceduralStreetDataset.METAINFO,
            pipeline=[
                dict(type='LoadCheckedImageFromFile'),
                dict(
                    type='FixedDistortion',
                    space=cfg.distortion_space,
                    distortion_type=dtype,
                    level=level,
                ),
                dict(type='Resize', scale=MODEL_SIZE[::-1], keep_ratio=True),
                dict(type='LoadCheckedAnnotations', num_classes=8),
                dict(type='PackSegInputs', meta_keys=cfg.meta_keys),
            ],
        ),
    )
    return cfg


@pytest.fixture(scope='module')
def camera(tmp_path_factory):
    """Clean frames and labels on disk, and a checkpoint whose gears differ
    from the base and from each other."""
    root = tmp_path_factory.mktemp('camera')
    (root / 'img').mkdir()
    (root / 'ann').mkdir()
    rng = np.random.RandomState(1)
    for i in range(CAMERA_FRAMES):
        # Smooth scenes: random blobs, upsampled.
        small = rng.randint(0, 256, (6, 8, 3)).astype(np.float32)
        img = cv2.resize(small, SIZE[::-1], interpolation=cv2.INTER_CUBIC)
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255)
        img = img.astype(np.uint8)
        assert cv2.imwrite(str(root / 'img' / f'f{i}.png'), img)
        label = rng.randint(0, 8, SIZE).astype(np.uint8)
        assert cv2.imwrite(str(root / 'ann' / f'f{i}.png'), label)
    cfg = _camera_config(root)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    space = build_space(cfg.distortion_space)
    with torch.no_grad():
        # BN statistics of the random base on random inputs, so that its
        # masks are not one class everywhere; then every gear starts from
        # this base (a bare checkpoint) and is moved away from it.
        for module in model.segmentor.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None
        model.segmentor.train()
        model.segmentor._forward(torch.randn(8, 3, *MODEL_SIZE))
        model.load_state_dict(model.segmentor.state_dict())
        for dtype, level in CAMERA_GEARS[1:]:
            for p in model.trainable_gear_parameters(
                space.gear_id(dtype, level)
            ):
                p.add_(torch.randn_like(p))
    checkpoint = root / 'gearnn.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    return root, checkpoint


def _test_loop(root: Path, checkpoint: Path, distortion) -> dict:
    """What tools/test.py predicts: the Runner's test dataloader through
    ``model.test_step``, as its TestLoop runs them."""
    cfg = _camera_config(root, distortion)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, str(checkpoint), map_location='cpu')
    model.eval()
    preds = {}
    with torch.no_grad():
        for batch in Runner.build_dataloader(cfg.test_dataloader):
            for sample in model.test_step(batch):
                preds[Path(sample.img_path).stem] = sample
    return preds


def test_predictions_equal_the_test_loop(camera, tmp_path):
    root, checkpoint = camera
    space = build_space(Config.fromfile(str(CONFIG)).distortion_space)
    # The frames as the camera delivers them: distorted at their own size.
    frames, metadata, expected = [], {}, {}
    for dtype, level in CAMERA_GEARS:
        tested = _test_loop(root, checkpoint, (dtype, level))
        for stem, sample in tested.items():
            name = f'{dtype}_{stem}'
            img = cv2.imread(str(root / 'img' / f'{stem}.png'))
            if dtype != 'clean':
                img = distort(img, dtype, level)
            frames.append(img)
            metadata[name] = dict(type=dtype, level=level)
            expected[name] = sample
    names = list(metadata)
    # The inferencer's pipeline is the config's, without the distortion.
    inferencer = GearNNInferencer(
        _camera_config(root, ('jpeg', 15)), str(checkpoint)
    )
    result = inferencer(
        frames,
        metadata=[metadata[n] for n in names],
        batch_size=2,
        return_datasamples=True,
    )
    assert result['frames_done'] == len(names)
    for name, pred in zip(names, result['predictions']):
        want = expected[name]
        dtype = metadata[name]['type']
        gear = space.gear_id(dtype, metadata[name]['level'])
        assert pred.gear_routed == want.gear_routed == gear
        assert pred.img_shape == want.img_shape == MODEL_SIZE
        assert pred.ori_shape == SIZE
        mask = pred.pred_sem_seg.data[0]
        assert mask.shape == SIZE
        # Not one class everywhere: a mask that can tell resolutions apart.
        assert len(mask.unique()) > 2
        assert torch.equal(mask, want.pred_sem_seg.data[0]), name
    # The gears matter: a frame's mask under another gear differs.
    other = inferencer(frames[:1], metadata=[metadata[names[-1]]])
    assert not np.array_equal(
        result['predictions'][0].pred_sem_seg.data[0].numpy(),
        other['predictions'][0],
    )


def test_batches_share_a_gear_and_a_size(inferencer, frames):
    meta = {
        'a': {'type': 'jpeg', 'level': 15},
        'b': {'type': 'jpeg', 'level': 15},
        'c': {'type': 'brightness', 'level': 0.2},
    }
    source = FrameSource(frames)
    batches = [
        [f.name for f in batch]
        for batch, _ in inferencer.preprocess(source, 3, metadata=meta)
    ]
    # 'bad' (unreadable) comes alone; a gear change ends a batch.
    assert batches == [['a', 'b'], ['bad'], ['c']]
    with pytest.raises(ValueError, match='batch_size'):
        next(inferencer.preprocess(source, 0))


def test_pipeline_has_no_distortion_and_no_labels(camera):
    root, checkpoint = camera
    inferencer = GearNNInferencer(_camera_config(root, ('jpeg', 15)))
    names = [type(t).__name__ for t in inferencer.pipeline.transforms]
    assert names == ['InferencerLoader', 'Resize', 'PackSegInputs']
