"""On two gloo ranks, a gear that no rank's batch holds does not move.

``torchrun`` runs this file as a script: each rank wraps the same model
(``build()`` of ``tests/test_models/test_gearnn_segmentor.py``, gears 1-3)
in :class:`~mmseg_gearnn.engine.GearNNDistributedDataParallel` and takes
three steps, for AdamW (weight decay) and for SGD (momentum, weight
decay)::

    step  rank 0      rank 1
    1     gears 1, 1  gears 3, 3   gears 1 and 3 learn on both ranks
    2     clean only  gears 3, 3   only gear 3 may move
    3     clean only  clean only   nothing may move

Gear 2 is never met. Each rank saves its gears and their optimiser state
after every step; the test compares them.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = REPO_ROOT / 'tests'
TIMEOUT = 240  # seconds; a run takes 10-20 s on 2 busy cores
KINDS = ('adamw', 'sgd')
STEPS = {0: ([1, 1], [0, 0], [0, 0]), 1: ([3, 3], [3, 3], [0, 0])}


def _worker(out_dir: str) -> None:
    """One rank's three steps (run by torchrun, see the module docstring)."""
    import torch.distributed as torch_dist
    from test_gear_state import gear_snapshot, make_optimizer
    from test_gearnn_segmentor import build, make_batch

    from mmseg_gearnn.engine import GearNNDistributedDataParallel

    torch_dist.init_process_group('gloo')
    rank = torch_dist.get_rank()
    try:
        snapshots = {}
        for kind in KINDS:
            model = build()
            ddp = GearNNDistributedDataParallel(model)
            optim = make_optimizer(kind, model.parameters())
            ddp.train()
            snapshots[kind] = [gear_snapshot(model, optim)]
            for step, gears in enumerate(STEPS[rank]):
                ddp.train_step(make_batch(gears, seed=10 * step + rank), optim)
                snapshots[kind].append(gear_snapshot(model, optim))
        torch.save(snapshots, os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return torch.equal(torch.as_tensor(a), torch.as_tensor(b))


@pytest.mark.faults
def test_gears_absent_from_every_rank_do_not_move(tmp_path):
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join(
            [
                str(REPO_ROOT),
                str(TESTS),
                str(TESTS / 'test_models'),
                os.environ.get('PYTHONPATH', ''),
            ]
        ),
    )
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'torch.distributed.run',
            '--nproc_per_node=2',
            '--master_addr=127.0.0.1',
            f'--master_port={_free_port()}',
            __file__,
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [
        torch.load(tmp_path / f'rank{r}.pth', weights_only=True)
        for r in range(2)
    ]
    for kind in KINDS:
        start, *steps = ranks[0][kind]
        # Both ranks hold bit-identical gears and optimiser state.
        for i, (a, b) in enumerate(zip(ranks[0][kind], ranks[1][kind])):
            assert _equal(a, b), f'{kind}: the ranks differ after step {i}'
        # Gear 2, never met, is its start and has no optimiser state.
        for i, snapshot in enumerate(steps, 1):
            assert _equal(snapshot[2], start[2]), f'{kind}: gear 2, step {i}'
            assert not snapshot[2]['optim'], kind
        # Step 1 trains gears 1 and 3; then gear 1 (absent) stays put,
        # gear 3 (one rank's batch) learns; step 3 changes nothing.
        for gear, moves in (
            (1, [True, False, False]),
            (3, [True, True, False]),
        ):
            for i, moved in enumerate(moves):
                before, after = ([start, *steps][i][gear], steps[i][gear])
                assert _equal(before, after) != moved, (kind, gear, i + 1)


if __name__ == '__main__':
    _worker(sys.argv[1])
