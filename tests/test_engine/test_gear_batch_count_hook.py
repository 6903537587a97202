"""GearBatchCountHook in a real mmengine Runner: the training log says how
many batches (and samples) each gear got, and warns of the gears that got
none."""

import copy
import glob
import os.path as osp

import pytest
from mmengine.runner import Runner
from toys import tiny_segmentor

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.engine.hooks.gear_batch_count_hook import GearBatchCountHook

SPACE = dict(distortions=dict(jpeg=[30, 10], brightness=[0.3]))
BATCH = 2
ITERS = 3


def _runner(work_dir, hook, types):
    return Runner(
        model=dict(
            type='GearNNSegmentor',
            segmentor=copy.deepcopy(tiny_segmentor((32, 32))),
            space=SPACE,
            adaptor='bn',
        ),
        work_dir=str(work_dir),
        train_dataloader=dict(
            batch_size=BATCH,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dict(
                type='ProceduralStreetDataset',
                num_samples=4,
                img_size=(32, 32),
                seed=0,
                pipeline=[
                    dict(
                        type='RandomDistortion',
                        space=SPACE,
                        types=types,
                        clean_prob=0.0,
                        draw_every=BATCH,
                    ),
                    dict(
                        type='PackSegInputs',
                        meta_keys=(
                            'img_shape',
                            'ori_shape',
                            'pad_shape',
                            'distortion',
                        ),
                    ),
                ],
            ),
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=ITERS),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=100),
            logger=dict(type='LoggerHook', interval=1),
        ),
        custom_hooks=[hook],
        default_scope='mmseg',
    )


def _log_text(runner) -> str:
    (path,) = glob.glob(osp.join(runner.log_dir, '*.log'))
    with open(path, encoding='utf-8') as f:
        return f.read()


def test_counts_and_idle_gears_in_the_log(tmp_path):
    hook = GearBatchCountHook(interval=2)
    runner = _runner(tmp_path, hook, types=['jpeg'])
    runner.train()
    model = runner.model
    jpeg = {model.space.gear_id('jpeg', 30), model.space.gear_id('jpeg', 10)}
    counts = {c['gear']: c for c in hook.counts()}
    assert sum(c['samples'] for c in counts.values()) == ITERS * BATCH
    # One draw per batch: each batch holds one gear, a jpeg one.
    assert sum(counts[g]['batches'] for g in jpeg) == ITERS
    idle = [g for g in counts if g not in jpeg]
    assert all(counts[g]['batches'] == 0 for g in idle)

    text = _log_text(runner)
    # Logged at iteration 2 and at the end.
    assert text.count('gear training batches (samples) in ') == 2
    assert text.count('got no training batch') == 1  # at the end only
    final = text[text.rindex('gear training batches (samples) in 3 ') :]
    assert f'{len(model.adaptor_names)} adaptor tensors per gear' in final
    for gear in jpeg:
        dtype, level = model.space.level_of(gear)
        c = counts[gear]
        assert (
            f'gear {gear} ({dtype} {level}): {c["batches"]} ({c["samples"]})'
        ) in final
    # The brightness gear (and a jpeg gear that drew no batch) is named.
    untrained = [g for g in range(1, len(counts)) if not counts[g]['batches']]
    assert model.space.gear_id('brightness', 0.3) in untrained
    warning = text.split('got no training batch in 3 training iterations')
    assert len(warning) == 2
    assert f'{len(untrained)} gear(s)' in warning[0].splitlines()[-1]
    named = warning[1].splitlines()[0]
    for gear in untrained:
        dtype, level = model.space.level_of(gear)
        assert f'gear {gear} ({dtype} {level})' in named


@pytest.mark.faults
def test_bad_interval():
    with pytest.raises(ValueError, match='interval must be a non-negative'):
        GearBatchCountHook(interval=-1)
