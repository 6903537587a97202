"""tools/train.py and tools/test.py end to end, as subprocesses.

A tiny mmseg EncoderDecoder on procedural 32x32 street scenes; the config
inherits the plugin's ``configs/_base_/gearnn_runtime.py`` by absolute path,
so its ``custom_imports`` loads the plugin.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from toys import tiny_segmentor_source

from mmseg_gearnn.utils import load_checkpoint_safely

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
GEARNN_RUNTIME = REPO_ROOT / 'configs' / '_base_' / 'gearnn_runtime.py'
TIMEOUT = 120  # seconds; each run takes about 10 s on an idle 2-core CPU

TINY_CONFIG = """
_base_ = [{runtime!r}, 'mmseg::_base_/default_runtime.py']
{model}train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='ProceduralStreetDataset', num_samples=4,
                 img_size=(32, 32), seed=0,
                 pipeline=[dict(type='PackSegInputs')]))
val_dataloader = dict(
    batch_size=1, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ProceduralStreetDataset', num_samples=2,
                 img_size=(32, 32), seed=1, test_mode=True,
                 pipeline=[dict(type='PackSegInputs')]))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=100,
         by_epoch=False)
]
# Deliberately long: the tests shorten it with --cfg-options.
train_cfg = dict(type='IterBasedTrainLoop', max_iters=100, val_interval=100)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
""".replace('{model}', tiny_segmentor_source())


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a tool with this interpreter; the output is kept for asserts."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _show(proc: subprocess.CompletedProcess) -> str:
    tail = (proc.stdout[-3000:], proc.stderr[-3000:])
    return f'rc={proc.returncode}\n' + '\n'.join(tail)


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> dict:
    """tools/train.py, 2 iterations with validation at the end."""
    root = tmp_path_factory.mktemp('tools')
    config = root / 'fcn_tiny-r18_1xb2-100i_procedural-32x32.py'
    config.write_text(TINY_CONFIG.format(runtime=str(GEARNN_RUNTIME)))
    work_dir = root / 'work_dir'
    proc = _run(
        str(TOOLS / 'train.py'),
        str(config),
        '--work-dir',
        str(work_dir),
        '--cfg-options',
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2',
        cwd=root,
    )
    assert proc.returncode == 0, _show(proc)
    checkpoint = work_dir / 'iter_2.pth'
    assert checkpoint.is_file(), _show(proc)
    assert not (work_dir / 'iter_100.pth').exists()
    return dict(
        root=root,
        config=config,
        work_dir=work_dir,
        checkpoint=checkpoint,
        output=proc.stdout + proc.stderr,
    )


def test_train_runs_the_overridden_schedule(trained):
    assert 'Iter(train) [2/2]' in trained['output']
    assert 'Iter(val)' in trained['output']  # validation at iteration 2
    assert 'mIoU:' in trained['output']
    ckpt = load_checkpoint_safely(trained['checkpoint'])
    assert ckpt['meta']['iter'] == 2


def test_test_prints_miou(trained, tmp_path):
    proc = _run(
        str(TOOLS / 'test.py'),
        str(trained['config']),
        str(trained['checkpoint']),
        '--work-dir',
        str(tmp_path / 'test'),
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, _show(proc)
    assert f'Load checkpoint from {trained["checkpoint"]}' in out
    assert 'Iter(test)' in out and 'mIoU:' in out


def test_train_resume_continues(trained, tmp_path):
    work_dir = tmp_path / 'resume'
    shutil.copytree(trained['work_dir'], work_dir)
    proc = _run(
        str(TOOLS / 'train.py'),
        str(trained['config']),
        '--work-dir',
        str(work_dir),
        '--resume',
        '--cfg-options',
        'train_cfg.max_iters=3',
        'train_cfg.val_interval=3',
        'default_hooks.checkpoint.interval=3',
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, _show(proc)
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Iter(train) [3/3]' in out
    assert 'Iter(train) [1/3]' not in out
    assert (work_dir / 'iter_3.pth').is_file()


class _SystemCall:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@pytest.mark.faults
def test_test_refuses_malicious_checkpoint(trained, tmp_path):
    marker = tmp_path / 'marker'
    evil = tmp_path / 'evil.pth'
    ckpt = load_checkpoint_safely(trained['checkpoint'])
    ckpt['meta']['payload'] = _SystemCall(marker)
    torch.save(ckpt, evil)
    proc = _run(
        str(TOOLS / 'test.py'),
        str(trained['config']),
        str(evil),
        '--work-dir',
        str(tmp_path / 'test'),
        cwd=tmp_path,
    )
    assert proc.returncode != 0, _show(proc)
    assert 'UnsafeCheckpointError' in proc.stderr, _show(proc)
    assert f"Refused to load checkpoint '{evil}'" in proc.stderr
    assert f'{os.system.__module__}.system' in proc.stderr
    assert not marker.exists()


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f'gearnn_tool_{name}', TOOLS / f'{name}.py'
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_arguments(monkeypatch):
    train = _load_tool('train')
    # setenv first, so that monkeypatch restores the variable afterwards.
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.delenv('LOCAL_RANK')
    monkeypatch.setattr(
        sys,
        'argv',
        [
            'train.py',
            'cfg.py',
            '--work-dir',
            'w',
            '--resume',
            '--amp',
            '--launcher',
            'pytorch',
            '--cfg-options',
            'a.b=1',
            '--local-rank',
            '3',
        ],
    )
    args = train.parse_args()
    assert (args.config, args.work_dir, args.resume, args.amp) == (
        'cfg.py',
        'w',
        True,
        True,
    )
    assert args.launcher == 'pytorch' and args.cfg_options == {'a.b': 1}
    assert os.environ['LOCAL_RANK'] == '3'
    monkeypatch.setattr(sys, 'argv', ['train.py', 'c.py', '--launcher', 'x'])
    with pytest.raises(SystemExit):
        train.parse_args()


def test_test_arguments(monkeypatch):
    test = _load_tool('test')
    monkeypatch.setattr(
        sys,
        'argv',
        [
            'test.py',
            'cfg.py',
            'ckpt.pth',
            '--out',
            'o',
            '--show-dir',
            's',
            '--launcher',
            'slurm',
        ],
    )
    args = test.parse_args()
    assert (args.config, args.checkpoint, args.out, args.show_dir) == (
        'cfg.py',
        'ckpt.pth',
        'o',
        's',
    )
    assert args.launcher == 'slurm' and args.work_dir is None


@pytest.mark.parametrize(
    'script, args, forwarded',
    [
        (
            'dist_train.sh',
            ['c.py', '2', '--resume'],
            ['train.py', 'c.py', '--launcher', 'pytorch', '--resume'],
        ),
        (
            'dist_test.sh',
            ['c.py', 'k.pth', '2', '--out', 'o'],
            [
                'test.py',
                'c.py',
                'k.pth',
                '--launcher',
                'pytorch',
                '--out',
                'o',
            ],
        ),
    ],
)
def test_dist_scripts_call_torchrun(script, args, forwarded):
    """The launch line, printed by ``echo`` standing in for python."""
    path = TOOLS / script
    assert os.access(path, os.X_OK)
    env = dict(os.environ, PYTHON='echo', PORT='29999')
    proc = subprocess.run(
        ['bash', str(path), *args],
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
    assert Path(words[tool]).resolve() == TOOLS / forwarded[0]
    assert words[tool + 1 :] == forwarded[1:]
