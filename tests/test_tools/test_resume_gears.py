"""Kill a real gear-training process, resume it, compare with a run that
was never interrupted.

Three ``tools/train.py`` runs of the demo's gear config, shrunk to a few
32x32 iterations: (A) uninterrupted; (B) the same run, holding after the
iteration that follows its first checkpoint until it is killed with
SIGKILL; (C) ``--resume`` in B's work dir. C must end with exactly A's
gears, optimiser state and validation result.

B holds (a hook that sleeps, imported from a module written by the test)
so that the kill lands between two checkpoints deterministically, after
work that the resume has to redo; the hook touches no random state.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmseg_gearnn.utils import load_checkpoint_safely

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN = REPO_ROOT / 'tools' / 'train.py'
CONFIG = (
    REPO_ROOT
    / 'configs'
    / 'gearnn'
    / 'gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-96x128.py'
)
TIMEOUT = 180  # seconds per run; each takes about 15 s on a 2-core CPU
MAX_ITERS = 6
INTERVAL = 3  # checkpoint (and validation) interval
HOLD_AT = INTERVAL + 1  # B is killed after this iteration, before the next
# checkpoint: the resume restarts from iteration INTERVAL.

CFG_OPTIONS = [
    f'train_cfg.max_iters={MAX_ITERS}',
    # Validation in the middle of training too: it must not shift the
    # random streams of the training that follows.
    f'train_cfg.val_interval={INTERVAL}',
    f'default_hooks.checkpoint.interval={INTERVAL}',
    'default_hooks.checkpoint.max_keep_ckpts=-1',
    'default_hooks.logger.interval=1',
    f'param_scheduler.0.end={MAX_ITERS}',
    'train_dataloader.batch_size=2',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_dataloader.dataset.num_samples=8',
    'train_dataloader.dataset.img_size=(32,32)',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'val_dataloader.dataset.num_samples=4',
    'val_dataloader.dataset.img_size=(32,32)',
    'model.data_preprocessor.size=(32,32)',
    'randomness.seed=3',
    # No base checkpoint: the gears train on the init weights (opt-in).
    'model.allow_random_base=True',
]

HOLD_MODULE = '''
import os
import time

from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class HoldForKill(Hook):
    """After iteration ``at``, touch ``flag`` and sleep until killed."""

    priority = 'LOWEST'

    def __init__(self, at, flag):
        self.at = at
        self.flag = flag

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at:
            open(self.flag, 'w').close()
            while True:
                time.sleep(1)
'''

HOLD_CONFIG = """
_base_ = [{config!r}]
custom_imports = dict(imports=['mmseg_gearnn', 'hold_for_kill'],
                      allow_failed_imports=False)
custom_hooks = _base_.custom_hooks + [
    dict(type='HoldForKill', at={at}, flag={flag!r})]
"""


def _env(extra_path=None) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    if extra_path is not None:
        env['PYTHONPATH'] = os.pathsep.join(
            p for p in (str(extra_path), env.get('PYTHONPATH')) if p
        )
    return env


def _train(config, work_dir, *extra, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [
            sys.executable,
            str(TRAIN),
            str(config),
            '--work-dir',
            str(work_dir),
            *extra,
            '--cfg-options',
            *CFG_OPTIONS,
        ],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, _show(proc.stdout + proc.stderr)
    return proc


def _show(output: str) -> str:
    return output[-4000:]


def _val_lines(output: str):
    return re.findall(r'Iter\(val\) \[\d+/\d+\]\s+(aAcc:.*?mIoU: \S+)', output)


def _assert_same_tree(a, b, where='') -> None:
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f'{where} differs'
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_tree(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tree(x, y, f'{where}[{i}]')
    else:
        assert a == b, f'{where}: {a!r} != {b!r}'


@pytest.mark.faults
def test_killed_gear_training_resumes_to_the_uninterrupted_result(tmp_path):
    # A: uninterrupted.
    run_a = tmp_path / 'a'
    out_a = _train(CONFIG, run_a, cwd=tmp_path)
    out_a = out_a.stdout + out_a.stderr

    # B: the same run, killed with SIGKILL after iteration HOLD_AT.
    (tmp_path / 'hold_for_kill.py').write_text(HOLD_MODULE)
    flag = tmp_path / 'holding'
    hold_config = tmp_path / 'hold.py'
    hold_config.write_text(
        HOLD_CONFIG.format(config=str(CONFIG), at=HOLD_AT, flag=str(flag))
    )
    run_b = tmp_path / 'b'
    log_b = open(tmp_path / 'b.log', 'w')
    proc = subprocess.Popen(
        [
            sys.executable,
            str(TRAIN),
            str(hold_config),
            '--work-dir',
            str(run_b),
            '--cfg-options',
            *CFG_OPTIONS,
        ],
        cwd=tmp_path,
        env=_env(extra_path=tmp_path),
        stdout=log_b,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not flag.exists():
            assert proc.poll() is None, _show((tmp_path / 'b.log').read_text())
            assert time.monotonic() < deadline, 'run B never reached the hold'
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_b.close()
    log = (tmp_path / 'b.log').read_text()
    assert f'Iter(train) [{HOLD_AT}/{MAX_ITERS}]' in log, _show(log)
    assert (run_b / f'iter_{INTERVAL}.pth').is_file()
    assert not (run_b / f'iter_{MAX_ITERS}.pth').exists()
    assert not (run_b / 'gears.pth').exists()

    # C: resume B's work dir with the original config.
    out_c = _train(CONFIG, run_b, '--resume', cwd=tmp_path)
    out_c = out_c.stdout + out_c.stderr
    assert f'resumed epoch: 0, iter: {INTERVAL}' in out_c, _show(out_c)
    assert f'Iter(train) [{INTERVAL + 1}/{MAX_ITERS}]' in out_c
    assert f'Iter(train) [{INTERVAL}/{MAX_ITERS}]' not in out_c

    final_a = load_checkpoint_safely(run_a / f'iter_{MAX_ITERS}.pth')
    final_c = load_checkpoint_safely(run_b / f'iter_{MAX_ITERS}.pth')
    gears_a = {
        k: v for k, v in final_a['state_dict'].items() if 'gear_bank' in k
    }
    gears_c = {
        k: v for k, v in final_c['state_dict'].items() if 'gear_bank' in k
    }
    assert gears_a, 'no gear tensors in the checkpoint'
    # The gears moved: the comparison is not between two initial states.
    first = load_checkpoint_safely(run_a / f'iter_{INTERVAL}.pth')
    assert any(
        not torch.equal(first['state_dict'][k], v) for k, v in gears_a.items()
    )
    _assert_same_tree(gears_a, gears_c, 'gears')
    _assert_same_tree(final_a['state_dict'], final_c['state_dict'], 'model')
    _assert_same_tree(final_a['optimizer'], final_c['optimizer'], 'optim')
    _assert_same_tree(
        final_a['param_schedulers'], final_c['param_schedulers'], 'sched'
    )
    # The compact gears files agree too.
    _assert_same_tree(
        torch.load(run_a / 'gears.pth', weights_only=True),
        torch.load(run_b / 'gears.pth', weights_only=True),
        'gears.pth',
    )
    # And so does the validation at the end.
    assert _val_lines(out_a)[-1] == _val_lines(out_c)[-1]
