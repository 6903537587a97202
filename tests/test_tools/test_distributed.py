"""Distributed gear training and selection on mmengine's launcher, on CPU.

Two ranks (``torchrun --nproc_per_node=2 ... --launcher pytorch``, gloo)
against one process. Gear training: 2 ranks x batch 2 against 1 process x
batch 4 on the same items. Item ``i`` has gear ``1 + i % 2 + 2 * (i // 4 %
2)`` (``dist_helpers.GearByIndexDistortion``) and the sampler does not
shuffle, so at every step rank 0 holds items ``{4k, 4k + 2}`` of one gear
and rank 1 items ``{4k + 1, 4k + 3}`` of another, which are exactly the
single process's two gear groups of the batch ``4k .. 4k + 3``: the same
BN batch statistics, the same loss weights, and gears that only one rank
uses (DDP's unused parameters, the BN statistics merge).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from toys import tiny_segmentor_source

from mmseg_gearnn.utils import load_checkpoint_safely

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
HELPERS = Path(__file__).resolve().parent
GEARNN_RUNTIME = REPO_ROOT / 'configs' / '_base_' / 'gearnn_runtime.py'
TIMEOUT = 240  # seconds per launch; a run takes 10-30 s on 2 busy cores

CONFIG = """
_base_ = [{runtime!r}, 'mmseg::_base_/default_runtime.py']
custom_imports = dict(
    imports=['mmseg_gearnn', 'dist_helpers'], allow_failed_imports=False)
# Gears 1-3 brightness, 4-5 resolution; gear 5 is never met.
distortion_space = dict(
    distortions=dict(brightness=[0.4, 0.2, 0.1], resolution=[0.5, 0.25]))
{model}
model = dict(
    type='GearNNSegmentor', segmentor=segmentor,
    data_preprocessor=segmentor['data_preprocessor'],
    space=distortion_space, adaptor='bn')
# tools/train.py adds the hooks of gearnn_hooks that custom_hooks lacks; this
# run compares the gears that training gives, so it leaves out the BN
# re-estimation, which would replace the statistics that training merged over
# the ranks (RECALIBRATE_CONFIG runs it).
gearnn_hooks = [
    hook for hook in _base_.gearnn_hooks
    if hook['type'] != 'GearBNRecalibrationHook'
]
meta_keys = ('img_shape', 'ori_shape', 'pad_shape', 'distortion')
train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=False),
    dataset=dict(
        type='ProceduralStreetDataset', num_samples=8, img_size=(32, 32),
        seed=0,
        pipeline=[
            dict(type='GearByIndexDistortion', space=distortion_space),
            dict(type='PackSegInputs', meta_keys=meta_keys),
        ]))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=3, val_interval=100)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100),
    visualization=dict(type='SegVisualizationHook', draw=False))
custom_hooks = [
    dict(type='FrozenBaseGuardHook', interval=1),
    dict(type='GearCheckpointHook'),
    dict(type='SaveRankStateHook'),
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
""".replace(
    '{model}',
    tiny_segmentor_source('segmentor', (32, 32), 8, dropout_ratio=0.0),
)

# Selection scores on randomly distorted batches (the plugin's transform,
# which the selection replaces per level).
SELECT_CONFIG = """
_base_ = [{train!r}]
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='RandomDistortion', space=_base_.distortion_space),
    dict(type='PackSegInputs', meta_keys=_base_.meta_keys),
]))
"""

# Gear training, then each gear's BN statistics re-estimated on one batch.
RECALIBRATE_CONFIG = """
_base_ = [{train!r}]
custom_hooks = [
    dict(type='GearBNRecalibrationHook', batches_per_gear=1, max_batches=8),
    dict(type='GearCheckpointHook'),
    dict(type='SaveRankStateHook'),
]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(args, cwd: Path, nproc: int = 1) -> subprocess.CompletedProcess:
    """A tool with this interpreter: torchrun with ``nproc`` > 1."""
    env = dict(
        os.environ,
        PYTHONUNBUFFERED='1',
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join(
            [str(REPO_ROOT), str(HELPERS), os.environ.get('PYTHONPATH', '')]
        ),
    )
    if nproc > 1:
        launch = [
            '-m',
            'torch.distributed.run',
            f'--nproc_per_node={nproc}',
            '--master_addr=127.0.0.1',
            f'--master_port={_free_port()}',
        ]
        args = [*launch, *args, '--launcher', 'pytorch']
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _show(proc: subprocess.CompletedProcess) -> str:
    tail = (proc.stdout[-4000:], proc.stderr[-4000:])
    return f'rc={proc.returncode}\n' + '\n'.join(tail)


@pytest.fixture(scope='module')
def setup(tmp_path_factory) -> dict:
    """The configs and a deterministic base checkpoint."""
    root = tmp_path_factory.mktemp('dist')
    config = root / 'gearnn_fcn-tiny_2x2_procedural-32x32.py'
    config.write_text(CONFIG.format(runtime=str(GEARNN_RUNTIME)))
    select_config = root / 'select_fcn-tiny_procedural-32x32.py'
    select_config.write_text(SELECT_CONFIG.format(train=str(config)))
    recalibrate_config = root / 'recalibrate_fcn-tiny_procedural-32x32.py'
    recalibrate_config.write_text(RECALIBRATE_CONFIG.format(train=str(config)))
    from mmseg.registry import MODELS

    import mmseg_gearnn  # noqa: F401

    init_default_scope('mmseg')
    torch.manual_seed(0)
    base = MODELS.build(Config.fromfile(config).segmentor)
    base.init_weights()
    # Non-trivial BN statistics, so that the gears' updates show.
    with torch.no_grad():
        for name, tensor in base.state_dict().items():
            if name.endswith('running_mean'):
                tensor.normal_(0, 0.1)
            elif name.endswith('running_var'):
                tensor.uniform_(0.5, 2.0)
    checkpoint = root / 'base.pth'
    torch.save(dict(state_dict=base.state_dict(), meta=dict()), checkpoint)
    return dict(
        root=root,
        config=config,
        select=select_config,
        recalibrate=recalibrate_config,
        base=checkpoint,
    )


def _train(
    setup, name: str, nproc: int, batch_size: int, config: str = 'config'
) -> Path:
    work_dir = setup['root'] / name
    proc = _run(
        [
            str(TOOLS / 'train.py'),
            str(setup[config]),
            '--work-dir',
            str(work_dir),
            '--cfg-options',
            f'load_from={setup["base"]}',
            f'train_dataloader.batch_size={batch_size}',
        ],
        cwd=setup['root'],
        nproc=nproc,
    )
    assert proc.returncode == 0, _show(proc)
    assert 'Iter(train) [3/3]' in proc.stdout + proc.stderr, _show(proc)
    return work_dir


def _gear_state(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith('gear_bank.')}


def test_dist_train_matches_single_process(setup):
    dist_dir = _train(setup, 'dist', nproc=2, batch_size=2)
    single_dir = _train(setup, 'single', nproc=1, batch_size=4)
    ranks = [
        torch.load(dist_dir / f'state_rank{r}.pth', weights_only=True)
        for r in range(2)
    ]
    single = torch.load(single_dir / 'state_rank0.pth', weights_only=True)
    base = load_checkpoint_safely(setup['base'])['state_dict']

    # Both ranks hold bit-identical models.
    assert ranks[0].keys() == ranks[1].keys() == single.keys()
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), k
    # The base is untouched.
    for r, state in enumerate(ranks):
        for k, v in base.items():
            assert torch.equal(state[f'segmentor.{k}'], v), (r, k)
    # The gears were trained: gears 1-4 (each met by one rank only) moved
    # away from the base, gear 5 (never met) did not.
    gears = _gear_state(ranks[0])
    for k, v in gears.items():
        gear = int(k.split('.')[2])
        name = k.split('.', 3)[3].replace('::', '.')
        if 'num_batches_tracked' in name:
            # Steps 0 and 2: gears 1 and 2; step 1: gears 3 and 4.
            assert v.item() == {1: 2, 2: 2, 3: 1, 4: 1, 5: 0}[gear], k
        elif gear == 5:
            assert torch.equal(v, base[name]), k
    moved = [
        k
        for k, v in gears.items()
        if 'num_batches_tracked' not in k
        and not torch.equal(v, base[k.split('.', 3)[3].replace('::', '.')])
    ]
    assert {int(k.split('.')[2]) for k in moved} == {1, 2, 3, 4}
    # The same gears as one process on the union of the ranks' batches:
    # the same updates (compared as updates, which are small next to the
    # tensors), up to floating-point tolerance.
    for k, v in _gear_state(single).items():
        start = base[k.split('.', 3)[3].replace('::', '.')]
        torch.testing.assert_close(
            gears[k] - start, v - start, rtol=1e-4, atol=1e-7
        )
    # Rank 0 wrote the gears file, with these gears.
    assert (dist_dir / 'gears.pth').is_file()


def test_dist_bn_recalibration_matches_single_process(setup):
    """Each rank re-estimates the gears it meets (rank 0 gears 1 and 3,
    rank 1 gears 2 and 4) on the batch a single process splits into the
    same groups; merged over the ranks, every rank holds the single
    process's statistics."""
    dist_dir = _train(setup, 'recal_dist', 2, 2, config='recalibrate')
    single_dir = _train(setup, 'recal_single', 1, 4, config='recalibrate')
    ranks = [
        torch.load(dist_dir / f'state_rank{r}.pth', weights_only=True)
        for r in range(2)
    ]
    single = _gear_state(
        torch.load(single_dir / 'state_rank0.pth', weights_only=True)
    )
    for k, v in single.items():
        if 'num_batches_tracked' in k:
            # Re-estimated on one group, except gear 5 (never met).
            gear = int(k.split('.')[2])
            assert v.item() == (0 if gear == 5 else 1), k
        for r in range(2):
            torch.testing.assert_close(ranks[r][k], v, rtol=1e-4, atol=1e-6)


def _select(setup, out: Path, nproc: int) -> subprocess.CompletedProcess:
    proc = _run(
        [
            str(TOOLS / 'select_params.py'),
            str(setup['select']),
            '--checkpoint',
            str(setup['base']),
            '--method',
            'fisher',
            '--budget',
            '0.05',
            '--steps',
            '2',
            '--levels-subset',
            'brightness',
            '--device',
            'cpu',
            '--no-progress',
            '--out',
            str(out),
        ],
        cwd=setup['root'],
        nproc=nproc,
    )
    assert proc.returncode == 0, _show(proc)
    return proc


def test_dist_select_writes_one_file_like_single_process(setup):
    dist_out = setup['root'] / 'select_dist' / 'selection.json'
    single_out = setup['root'] / 'select_single' / 'selection.json'
    proc = _select(setup, dist_out, nproc=2)
    _select(setup, single_out, nproc=1)
    out = proc.stdout + proc.stderr
    # Scored and written once (by rank 0), and nothing else left there.
    assert out.count('selection written to') == 1, _show(proc)
    assert out.count('scored ') == 1, _show(proc)
    assert os.listdir(dist_out.parent) == ['selection.json']
    # Rank 0 ran the selection as a single process does: the same file.
    dist = json.loads(dist_out.read_text())
    assert dist['selected']
    assert dist == json.loads(single_out.read_text())


def test_dist_select_script_calls_torchrun():
    """The launch line, printed by ``echo`` standing in for python."""
    path = TOOLS / 'dist_select_params.sh'
    assert os.access(path, os.X_OK)
    env = dict(os.environ, PYTHON='echo', PORT='29999')
    proc = subprocess.run(
        ['bash', str(path), 'c.py', '2', '--checkpoint', 'b.pth'],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert words[:2] == ['-m', 'torch.distributed.run']
    assert '--nproc_per_node=2' in words and '--master_port=29999' in words
    tool = next(i for i, w in enumerate(words) if w.endswith('.py'))
    assert Path(words[tool]).resolve() == TOOLS / 'select_params.py'
    assert words[tool + 1 :] == [
        'c.py',
        '--launcher',
        'pytorch',
        '--checkpoint',
        'b.pth',
    ]


TEST_CONFIG = """
_base_ = [{train!r}]
test_dataloader = dict(
    batch_size=1, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ProceduralStreetDataset', num_samples=4, img_size=(32, 32),
        seed=1, test_mode=True,
        pipeline=[dict(type='PackSegInputs', meta_keys=_base_.meta_keys)]))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')
"""


def _test_miou(setup, nproc: int) -> str:
    config = setup['root'] / 'test_fcn-tiny_procedural-32x32.py'
    config.write_text(TEST_CONFIG.format(train=str(setup['config'])))
    proc = _run(
        [
            str(TOOLS / 'test.py'),
            str(config),
            str(setup['base']),
            '--work-dir',
            str(setup['root'] / f'test_{nproc}'),
        ],
        cwd=setup['root'],
        nproc=nproc,
    )
    assert proc.returncode == 0, _show(proc)
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if 'mIoU: ' in line]
    assert lines, _show(proc)
    return lines[-1].split('mIoU: ')[1].split()[0]


def test_dist_test_matches_single_process(setup):
    # tools/test.py on two CPU ranks: each evaluates half of the frames and
    # the metric gathers them into the single-process result.
    assert _test_miou(setup, nproc=2) == _test_miou(setup, nproc=1)
