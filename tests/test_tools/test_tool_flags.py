"""mmseg's tool flags on a gear config, run as a user runs them.

``tools/test.py --out / --show-dir / --tta / --cfg-options / --work-dir``
and ``tools/train.py --resume / --amp`` on the demo's gear config
(procedural frames, shrunk through ``--cfg-options``), from a saved base.
"""

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
from mmengine.structures import PixelData
from mmseg.registry import MODELS, TRANSFORMS
from mmseg.structures import SegDataSample

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.engine import use_tta
from mmseg_gearnn.engine.hooks.gear_visualization_hook import caption_of

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
CONFIG = (
    REPO_ROOT
    / 'configs'
    / 'gearnn'
    / 'gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-96x128.py'
)
TIMEOUT = 300
SIZE = (32, 32)
NUM_GEARS = 13  # the demo space: clean + 4 types x 3 levels

SHRINK = [
    f'train_dataloader.dataset.img_size={SIZE}'.replace(' ', ''),
    'train_dataloader.dataset.num_samples=4',
    'train_dataloader.batch_size=2',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_dataloader.dataset.pipeline.1.draw_every=2',
    'val_dataloader.dataset.num_samples=1',
    f'val_dataloader.dataset.img_size={SIZE}'.replace(' ', ''),
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'test_dataloader.dataset.dataset.num_samples=1',
    f'test_dataloader.dataset.dataset.img_size={SIZE}'.replace(' ', ''),
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    f'model.data_preprocessor.size={SIZE}'.replace(' ', ''),
    'default_hooks.logger.interval=1',
    # BN re-estimation after training on two batches only.
    'custom_hooks.2.batches_per_gear=1',
    'custom_hooks.2.max_batches=2',
]


def _run(tool: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(TOOLS / tool), *map(str, args)],
        cwd=cwd,
        env=dict(os.environ, PYTHONUNBUFFERED='1'),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    proc.output = proc.stdout + proc.stderr
    return proc


def _ok(proc) -> str:
    assert proc.returncode == 0, proc.output[-4000:]
    return proc.output


@pytest.fixture(scope='module')
def base(tmp_path_factory) -> Path:
    """A saved base: the gear config's model, freshly initialised."""
    root = tmp_path_factory.mktemp('flags')
    cfg = Config.fromfile(str(CONFIG))
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    path = root / 'base.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def tested(base) -> dict:
    """tools/test.py with every output flag at once."""
    root = base.parent / 'test'
    proc = _run(
        'test.py',
        CONFIG,
        base,
        '--work-dir',
        root / 'work',
        '--out',
        root / 'out',
        '--show-dir',
        root / 'show',
        '--cfg-options',
        *SHRINK,
        'default_hooks.visualization.interval=1',
        'visualizer.alpha=0.0',  # the input shows through the masks
        cwd=base.parent,
    )
    return dict(root=root, output=_ok(proc))


def test_cfg_options_reach_the_run(tested):
    # One frame, swept over every gear, at the overridden size.
    assert f'Iter(test) [{NUM_GEARS}/{NUM_GEARS}]' in tested['output']


def test_work_dir_holds_the_run(tested):
    logs = list((tested['root'] / 'work').glob('*/*.log'))
    assert logs, 'no log in the work dir'
    assert 'mIoU per distortion type and level' in logs[0].read_text()


def test_out_writes_a_prediction_per_image_and_distortion(tested):
    files = sorted(p.name for p in (tested['root'] / 'out').iterdir())
    assert len(files) == NUM_GEARS
    assert '000000.png' in files  # clean, named as mmseg names it
    assert '000000_brightness_0.2.png' in files
    mask = cv2.imread(
        str(tested['root'] / 'out' / '000000_jpeg_5.png'), cv2.IMREAD_UNCHANGED
    )
    assert mask.shape == SIZE and mask.dtype == np.uint8
    assert mask.max() < 8  # class ids of the 8 procedural classes
    # The metrics are still computed.
    assert 'jpeg/5/mIoU' in tested['output'] or 'jpeg' in tested['output']


def _distorted(distortion_type, level):
    """The sweep's first frame as the model saw it (RGB)."""
    from mmseg_gearnn.datasets.procedural import render_street

    img, _ = render_street(np.random.default_rng((1, 0)), SIZE)
    cfg = Config.fromfile(str(CONFIG))
    transform = TRANSFORMS.build(
        dict(
            type='FixedDistortion',
            space=cfg.distortion_space,
            distortion_type=distortion_type,
            level=level,
        )
    )
    return transform(dict(img=img))['img'][..., ::-1]


@pytest.mark.parametrize(
    'name, distortion',
    [
        ('000000', ('clean', None)),
        ('000000_brightness_0.1', ('brightness', 0.1)),
    ],
)
def test_show_dir_draws_the_distorted_input(tested, name, distortion):
    drawn = cv2.imread(str(tested['root'] / 'show' / f'{name}.png'))[..., ::-1]
    seen = _distorted(*distortion)
    # The caption band on top, then the label and the prediction side by
    # side, each the input enlarged by a whole factor to fit the caption.
    height = drawn.shape[0]
    zoom = drawn.shape[1] // (2 * SIZE[1])
    band = height - SIZE[0] * zoom
    assert band > 0 and zoom >= 1
    image = drawn[band:, : SIZE[1] * zoom]
    expected = np.repeat(np.repeat(seen, zoom, 0), zoom, 1)
    assert np.abs(image.astype(int) - expected).mean() < 2.0
    assert drawn[:band].max() > 200  # the caption's white text


def test_show_dir_draws_every_frame_and_says_so(base, tmp_path):
    """Without an interval override every test frame is drawn (the
    config's visualization interval, 50 batches, drew none of the 13) and
    the log says how many."""
    show = tmp_path / 'show'
    output = _ok(
        _run(
            'test.py',
            CONFIG,
            base,
            '--work-dir',
            tmp_path / 'work',
            '--show-dir',
            show,
            '--cfg-options',
            *SHRINK,
            cwd=tmp_path,
        )
    )
    assert len(list(show.glob('*.png'))) == NUM_GEARS
    assert (
        f'--show-dir: {NUM_GEARS} frame(s) drawn to {show} (every test frame)'
        in output
    )


def test_caption_names_type_level_and_gear():
    sample = SegDataSample(
        metainfo=dict(
            distortion=dict(type='jpeg', level=15, gear=5), gear_routed=5
        )
    )
    sample.pred_sem_seg = PixelData(data=torch.zeros(1, 2, 2))
    assert caption_of(sample) == 'jpeg 15 | gear 5'
    assert caption_of(SegDataSample(metainfo={})) == 'clean'


TTA = """
_base_ = [{config!r}]
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='RequestedDistortion', space=_base_.distortion_space),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
             dict(type='RandomFlip', prob=1.0, direction='horizontal')],
            [dict(type='PackSegInputs', meta_keys=_base_.meta_keys)],
        ],
    ),
]
"""


def test_tta_tests_every_gear_with_flips(base, tmp_path):
    config = tmp_path / 'tta.py'
    config.write_text(TTA.format(config=str(CONFIG)))
    proc = _run(
        'test.py',
        config,
        base,
        '--tta',
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *SHRINK,
        cwd=tmp_path,
    )
    out = _ok(proc)
    assert 'SegTTAModel' in out or 'Iter(test)' in out
    assert f'Iter(test) [{NUM_GEARS}/{NUM_GEARS}]' in out
    # Every distortion kept its own group through the merge of the flips.
    for metric in ('clean/mIoU', 'jpeg/5/mIoU', 'gaussian_noise/60/mIoU'):
        assert metric in out


def test_tta_without_a_tta_pipeline_says_why():
    cfg = Config.fromfile(str(CONFIG))
    with pytest.raises(ValueError, match='--tta needs tta_pipeline'):
        use_tta(cfg)


@pytest.fixture(scope='module')
def trained(base) -> dict:
    work_dir = base.parent / 'train'
    proc = _run(
        'train.py',
        CONFIG,
        '--work-dir',
        work_dir,
        '--cfg-options',
        *SHRINK,
        f'load_from={base}',
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2',
        cwd=base.parent,
    )
    return dict(work_dir=work_dir, output=_ok(proc))


def test_resume_continues_the_gear_run(trained, base):
    proc = _run(
        'train.py',
        CONFIG,
        '--work-dir',
        trained['work_dir'],
        '--resume',
        '--cfg-options',
        *SHRINK,
        f'load_from={base}',
        'train_cfg.max_iters=3',
        'train_cfg.val_interval=3',
        'default_hooks.checkpoint.interval=3',
        cwd=base.parent,
    )
    out = _ok(proc)
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Iter(train) [3/3]' in out and 'Iter(train) [1/3]' not in out
    assert (trained['work_dir'] / 'gears_iter_3.pth').is_file()


def test_amp_on_cpu_says_why(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('this machine has a GPU: --amp can train')
    proc = _run(
        'train.py', CONFIG, '--amp', '--work-dir', tmp_path, cwd=tmp_path
    )
    assert proc.returncode != 0
    assert '--amp needs a GPU (CUDA) or an NPU, MLU or MUSA device' in (
        proc.stderr
    )
    # one line, before anything is written
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'vis_data').exists()
