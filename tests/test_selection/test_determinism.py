"""The same seed gives the same selection and the same gear weights on CPU;
another seed gives other ones (so these tests can fail)."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.runner import Runner
from toys import tiny_segmentor

from mmseg_gearnn.selection import run_selection_from_config

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL = REPO_ROOT / 'tools' / 'select_params.py'
RUNTIME = REPO_ROOT / 'configs' / '_base_' / 'gearnn_runtime.py'
# Noise draws per-image random numbers, brightness draws none.
SPACE = dict(distortions=dict(brightness=[0.5, 0.2], gaussian_noise=[30]))
META_KEYS = ('img_shape', 'ori_shape', 'pad_shape', 'flip', 'distortion')


def _train_pipeline(draw_every=1):
    return [
        dict(type='RandomFlip', prob=0.5),
        dict(
            type='RandomDistortion',
            space=SPACE,
            clean_prob=0.0,
            draw_every=draw_every,
        ),
        dict(type='PackSegInputs', meta_keys=META_KEYS),
    ]


def _train_dataloader(draw_every=1):
    return dict(
        batch_size=2,
        num_workers=0,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        dataset=dict(
            type='ProceduralStreetDataset',
            num_samples=6,
            img_size=(32, 32),
            seed=0,
            pipeline=_train_pipeline(draw_every),
        ),
    )


@pytest.fixture
def selection_setup(tmp_path, tiny_model_cfg, make_trained_like):
    from mmseg.registry import MODELS

    model_cfg = tiny_model_cfg
    model_cfg['decode_head']['num_classes'] = 8  # the procedural classes
    config = tmp_path / 'tiny_selection.py'
    config.write_text(
        f'_base_ = [{str(RUNTIME)!r}]\n'
        f'distortion_space = {SPACE!r}\n'
        f'model = {model_cfg!r}\n'
        f'train_dataloader = {_train_dataloader()!r}\n'
    )
    torch.manual_seed(0)
    model = make_trained_like(MODELS.build(copy.deepcopy(model_cfg)))
    checkpoint = tmp_path / 'base.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    return config, checkpoint


def _select(config, checkpoint, out, seed, hash_seed):
    # A different PYTHONHASHSEED per run: set or dict-of-str ordering must
    # not leak into the result.
    proc = subprocess.run(
        [
            sys.executable,
            str(TOOL),
            str(config),
            '--checkpoint',
            str(checkpoint),
            '--out',
            str(out),
            *'--method fisher --budget 0.05 --steps 2'.split(),
            *f'--seed {seed} --device cpu --no-progress'.split(),
        ],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONHASHSEED=hash_seed),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out.read_text()


def test_same_seed_gives_the_same_selection(selection_setup, tmp_path):
    config, checkpoint = selection_setup
    first = _select(config, checkpoint, tmp_path / 'a.json', 3, '1')
    second = _select(config, checkpoint, tmp_path / 'b.json', 3, '2')
    # Byte for byte: the selected list, every score, the budget.
    assert first == second
    record = json.loads(first)
    assert record['selected'] and record['seed'] == 3
    scores = {t['name']: t['raw_score'] for t in record['tensors']}
    assert len(set(scores.values())) > 1  # real scores, not a constant

    # Another seed scores other batches: the scores change.
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmseg')
    other = run_selection_from_config(
        Config.fromfile(str(config)),
        str(checkpoint),
        'fisher',
        budget=0.05,
        steps=2,
        seed=4,
        progress=False,
    )
    other_scores = {t['name']: t['raw_score'] for t in other['tensors']}
    assert other_scores.keys() == scores.keys()
    assert other_scores != scores


# -- gear training ---------------------------------------------------------
# Dropout (0.1) draws from torch's generator while training.
SEGMENTOR = tiny_segmentor((32, 32), num_classes=8)


def _train_gears(work_dir, seed):
    runner = Runner(
        model=dict(
            type='GearNNSegmentor',
            segmentor=copy.deepcopy(SEGMENTOR),
            space=SPACE,
            adaptor='bn',
        ),
        work_dir=str(work_dir),
        experiment_name=f'{work_dir.name}_seed{seed}',
        train_dataloader=_train_dataloader(draw_every=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
        train_cfg=dict(by_epoch=False, max_iters=4),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4)
        ),
        randomness=dict(seed=seed),
        default_scope='mmseg',
    )
    runner.train()
    return {
        k: v.detach().clone()
        for k, v in runner.model.gear_bank.state_dict().items()
    }


def test_same_seed_gives_the_same_gears(tmp_path):
    torch.set_num_threads(1)
    first = _train_gears(tmp_path / 'a', seed=5)
    # Whatever the process did in between must not matter.
    torch.rand(7)
    second = _train_gears(tmp_path / 'b', seed=5)
    other = _train_gears(tmp_path / 'c', seed=6)
    assert first.keys() == second.keys() == other.keys()
    assert first
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert any(not torch.equal(first[n], other[n]) for n in first)
