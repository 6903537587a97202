"""The flagship command end to end: ``tools/train.py`` and ``tools/test.py``
on ``configs/gearnn/deeplabv3_cityscapes.py`` as a user runs them, shrunk
through ``--cfg-options`` only (a small ResNet, a 32x64 crop, two
iterations), on procedural frames laid out as Cityscapes, from a saved
base checkpoint, with the config's adaptor by budget selected in the run.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from mmseg_gearnn.datasets.procedural import render_street
from mmseg_gearnn.models.gear_bank import adaptor_names_in
from mmseg_gearnn.selection import base_model_cfg, load_selection
from mmseg_gearnn.utils import load_checkpoint_safely

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / 'configs' / 'gearnn' / 'deeplabv3_cityscapes.py'
MIXED = CONFIG.with_name('deeplabv3_cityscapes_mixed.py')
TOOLS = REPO_ROOT / 'tools'
TIMEOUT = 180  # seconds; each run takes about 15 s on an idle 2-core CPU
FRAME = (64, 128)  # (h, w) of the procedural frames
FRAMES = dict(train=4, val=2)

# A ResNet-18 with 8 base channels under the config's DeepLabV3 heads, a
# 32x64 crop from frames resized to 64x128 (mmcv scales are (w, h)), no
# dataloader workers, one Fisher batch per level in the selection and one
# BN re-estimation batch per gear.
SMALL_BASE = {
    'model.segmentor.backbone.depth': 18,
    'model.segmentor.backbone.stem_channels': 8,
    'model.segmentor.backbone.base_channels': 8,
    'model.segmentor.decode_head.in_channels': 64,
    'model.segmentor.decode_head.channels': 8,
    'model.segmentor.auxiliary_head.in_channels': 32,
    'model.segmentor.auxiliary_head.channels': 8,
}
SHRINK = [
    *(f'{key}={value}' for key, value in SMALL_BASE.items()),
    'model.data_preprocessor.size=(32,64)',
    'model.adaptor.steps=1',
    'train_dataloader.dataset.pipeline.2.scale=(128,64)',
    'train_dataloader.dataset.pipeline.3.crop_size=(32,64)',
    'val_dataloader.dataset.pipeline.2.scale=(128,64)',
    'test_dataloader.dataset.dataset.pipeline.2.scale=(128,64)',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'custom_hooks.2.batches_per_gear=1',
]


def make_cityscapes(root: Path) -> Path:
    """Procedural frames as Cityscapes files: ``leftImg8bit/{split}/city/
    *_leftImg8bit.png`` and ``gtFine/{split}/city/*_gtFine_labelTrainIds.png``
    (the eight procedural classes are train ids 0..7)."""
    for split, count in FRAMES.items():
        images = root / 'leftImg8bit' / split / 'city'
        labels = root / 'gtFine' / split / 'city'
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for i in range(count):
            img, label = render_street(
                np.random.default_rng((len(split), i)), FRAME
            )
            stem = f'city_{i:06d}_000019'
            assert cv2.imwrite(str(images / f'{stem}_leftImg8bit.png'), img)
            assert cv2.imwrite(
                str(labels / f'{stem}_gtFine_labelTrainIds.png'), label
            )
    return root


def save_base(path: Path) -> dict:
    """Saves the shrunk config's base segmentor as an mmseg checkpoint."""
    cfg = Config.fromfile(str(CONFIG))
    cfg.merge_from_dict(SMALL_BASE)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    base = revert_sync_batchnorm(MODELS.build(base_model_cfg(cfg.model)))
    state = base.state_dict()
    torch.save(dict(state_dict=state, meta=dict()), path)
    return state


def _tool(tool: str, root: Path, *args: str, options=()):
    """``tools/<tool>.py CONFIG *args`` on the frames under ``root``, shrunk
    by :data:`SHRINK` and ``options``; the exit status and the output."""
    proc = subprocess.run(
        [sys.executable, str(TOOLS / f'{tool}.py'), str(CONFIG), *args]
        + ['--data-root', str(root / 'cityscapes')]
        + ['--cfg-options', *SHRINK, *options],
        cwd=root,
        env=dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1'),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )
    return proc.returncode, proc.stdout


def _train(root: Path, work_dir: Path, *options: str, resume=False):
    args = ['--work-dir', str(work_dir)] + ['--resume'] * resume
    options = ('train_cfg.max_iters=2', *options)
    return _tool('train', root, *args, options=options)


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> dict:
    """``tools/train.py CONFIG`` from a saved base: select, then train."""
    root = tmp_path_factory.mktemp('flagship')
    make_cityscapes(root / 'cityscapes')
    base = save_base(root / 'base.pth')
    work_dir = root / 'work_dir'
    rc, out = _train(root, work_dir, f'load_from={root / "base.pth"}')
    assert rc == 0, out[-6000:]
    return dict(root=root, base=base, work_dir=work_dir, output=out)


def test_config_names_the_released_base():
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.load_from == (
        'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/'
        'deeplabv3_r50-d8_512x1024_40k_cityscapes/'
        'deeplabv3_r50-d8_512x1024_40k_cityscapes_20200605_022449-acadc2f8.pth'
    )
    assert cfg.model.adaptor == dict(budget=0.002, method='fisher')
    assert cfg.model.segmentor.pretrained is None
    assert any(h.type == 'AdaptorSelectionHook' for h in cfg.custom_hooks)


def test_config_ships_the_distilled_recipe():
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.model.type == 'DistilledGearNNSegmentor'
    assert cfg.model.distill_weight == 1.0
    steps = [step['type'] for step in cfg.train_dataloader.dataset.pipeline]
    # The clean copy is taken after the crop, right before the distortion.
    assert steps[-3:] == ['KeepCleanCopy', 'RandomDistortion', 'PackSegInputs']
    assert 'clean_img' in cfg.train_dataloader.dataset.pipeline[-1].meta_keys


def test_train_selects_then_trains_gears_on_the_frozen_base(trained):
    work_dir, out = trained['work_dir'], trained['output']
    assert 'Iter(train) [2/2]' in out, out[-3000:]
    logs = [p.read_text() for p in work_dir.rglob('*.log')]
    assert any('loss_distill' in text for text in logs)  # the recipe's loss
    record = load_selection(str(work_dir / 'selection.json'))
    assert record['method'] == 'fisher'
    assert record['budget']['asked_fraction'] == 0.002
    assert 'selected to' in out and 'selection.json' in out
    state = load_checkpoint_safely(str(work_dir / 'iter_2.pth'))['state_dict']
    names = adaptor_names_in(state, 'gear_bank.')
    assert set(record['selected']) <= set(names)
    # The base is bit-identical to the saved one; the gears moved.
    for name, tensor in trained['base'].items():
        assert torch.equal(state[f'segmentor.{name}'], tensor), name
    moved = [
        key
        for key in state
        if key.startswith('gear_bank.gears.')
        and state[key].is_floating_point()
        and not torch.equal(
            state[key],
            trained['base'][key.split('.', 3)[3].replace('::', '.')],
        )
    ]
    assert moved


def test_test_uses_the_adaptor_of_the_checkpoint(trained, tmp_path):
    checkpoint = trained['work_dir'] / 'iter_2.pth'
    args = str(checkpoint), '--work-dir', str(tmp_path)
    rc, out = _tool('test', trained['root'], *args)
    assert rc == 0, out[-6000:]
    assert 'taken from the checkpoint' in out
    assert 'mIoU' in out


def test_train_resumes_with_the_selected_adaptor(trained, tmp_path):
    work_dir = tmp_path / 'resume'
    shutil.copytree(trained['work_dir'], work_dir)
    selection = (work_dir / 'selection.json').read_bytes()
    base = trained['root'] / 'base.pth'
    options = f'load_from={base}', 'train_cfg.max_iters=3'
    rc, out = _train(trained['root'], work_dir, *options, resume=True)
    assert rc == 0, out[-6000:]
    assert 'taken from the checkpoint' in out
    assert 'resumed epoch: 0, iter: 2' in out
    # The optimizer state of the gears was loaded (else resume raises).
    resumed = load_checkpoint_safely(str(work_dir / 'iter_3.pth'))
    assert resumed['meta']['iter'] == 3
    assert (work_dir / 'selection.json').read_bytes() == selection


def test_train_without_a_base_stops(tmp_path):
    make_cityscapes(tmp_path / 'cityscapes')
    rc, out = _train(tmp_path, tmp_path / 'work_dir', 'load_from=None')
    assert rc != 0
    assert 'no checkpoint has filled the base model' in out
    assert 'Traceback' not in out  # one line, not a traceback
    assert not (tmp_path / 'work_dir' / 'selection.json').exists()


def test_the_mixed_base_step_then_gears_over_it(trained, tmp_path):
    """The recipe's first step: the base fine-tuned on distorted frames
    (every weight moves), then the flagship's gears over that model."""
    root = trained['root']
    # The same shrinking for the plain segmentor (no wrapper, no adaptor).
    plain = [
        option.replace('model.segmentor.', 'model.')
        for option in SHRINK
        if not option.startswith(('model.adaptor', 'custom_hooks'))
    ]
    work_dir = tmp_path / 'mixed'
    proc = subprocess.run(
        [sys.executable, str(TOOLS / 'train.py'), str(MIXED)]
        + [
            '--work-dir',
            str(work_dir),
            '--data-root',
            str(root / 'cityscapes'),
        ]
        + ['--cfg-options', *plain, 'train_cfg.max_iters=2']
        + [f'load_from={root / "base.pth"}'],
        cwd=root,
        env=dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1'),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-6000:]
    mixed = work_dir / 'iter_2.pth'
    state = load_checkpoint_safely(str(mixed))['state_dict']
    assert set(state) == set(trained['base'])
    assert not torch.equal(
        state['backbone.stem.0.weight'],
        trained['base']['backbone.stem.0.weight'],
    )
    rc, out = _train(root, tmp_path / 'gears', f'load_from={mixed}')
    assert rc == 0, out[-6000:]
    gears = load_checkpoint_safely(str(tmp_path / 'gears' / 'iter_2.pth'))
    for name, tensor in state.items():
        assert torch.equal(gears['state_dict'][f'segmentor.{name}'], tensor)
