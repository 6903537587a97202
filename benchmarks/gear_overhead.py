"""What gears cost: memory of base + 10 gears, gear-switch time, throughput.

    python benchmarks/gear_overhead.py [--config CONFIG] [--size H W]

Builds the config's segmentor (random weights: costs do not depend on
them), selects an adaptor at ``--budget`` of the model's bytes with the
exact knapsack, wraps it in a ``GearNNSegmentor`` with 10 distorted gears,
and measures in one run, on this machine:

- ``memory_ratio_10_gears``: (base + 10 adaptors) bytes over base bytes;
- ``switch_over_forward``: median time of one gear switch (copying a
  gear's adaptor into the model) over the bare segmentor's batch-1
  forward (``gear_changing_forward_ms_batch1`` is a whole batch-1 forward
  through the wrapper with a different gear on every call);
- ``throughput_ratio``: images/s of the wrapper with a batch on one
  distorted gear over the bare segmentor's: the median over ``--pairs``
  pairs of one bare and one wrapper forward run back to back (their order
  alternating from pair to pair, so that neither always runs second), of
  each pair's time ratio; a pair sees the same machine load on both
  sides, so the median is stable on a shared machine where the two
  medians of separate rounds are not. ``throughput_ratio_spread`` gives
  the ratios' quartiles and standard deviation.

Writes ``benchmarks/results/gear_overhead.json`` with the commit measured.
"""

import argparse
import json
import os.path as osp
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmseg_gearnn  # noqa: F401
from gearnn_bench.provenance import (
    REPO_ROOT,
    RESULTS_DIR,
    add_allow_dirty,
    record,
)
from mmseg_gearnn.selection import run_selection
from mmseg_gearnn.utils.io import atomic_write

SPACE = dict(
    distortions=dict(
        jpeg=[50, 30, 20, 10, 5], brightness=[0.4, 0.2, 0.1, 0.05, 0.025]
    )
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--config',
        default=osp.join(
            REPO_ROOT,
            'configs/gearnn/deeplabv3plus_r18-tiny_1xb8-1k_procedural-'
            '96x128.py',
        ),
    )
    parser.add_argument('--size', type=int, nargs=2, default=(360, 480))
    parser.add_argument('--budget', type=float, default=0.002)
    parser.add_argument(
        '--repeats',
        type=int,
        default=30,
        help='switches (x20) and batch-1 forwards timed',
    )
    parser.add_argument(
        '--pairs',
        type=int,
        default=40,
        help='bare/wrapper forward pairs of the throughput ratio',
    )
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument(
        '--out',
        default=osp.join(RESULTS_DIR, 'gear_overhead.json'),
    )
    add_allow_dirty(parser)
    return parser.parse_args()


def samples(n, size, gear=None, space=None):
    out = []
    for _ in range(n):
        meta = dict(img_shape=size, ori_shape=size, pad_shape=size)
        if gear is not None:
            dtype, level = space.level_of(gear)
            meta['distortion'] = dict(type=dtype, level=level, gear=gear)
        out.append(SegDataSample(metainfo=meta))
    return out


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def paired_ratio(
    bare: Callable[[], object], wrapped: Callable[[], object], pairs: int
) -> Dict[str, float]:
    """Median over ``pairs`` back-to-back pairs of ``bare`` time over
    ``wrapped`` time (the throughput of ``wrapped`` over ``bare``), the
    order alternating from pair to pair, with the ratios' spread."""
    if pairs < 2:
        raise ValueError(f'pairs must be >= 2, got {pairs}')
    bare(), wrapped()  # warm-up
    ratios: List[float] = []
    for i in range(pairs):
        calls = (bare, wrapped) if i % 2 == 0 else (wrapped, bare)
        times = {}
        for fn in calls:
            start = time.perf_counter()
            fn()
            times[fn] = time.perf_counter() - start
        ratios.append(times[bare] / times[wrapped])
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return dict(
        median=median,
        q1=q1,
        q3=q3,
        std=statistics.stdev(ratios),
        min=min(ratios),
        max=max(ratios),
    )


def main():
    args = parse_args()
    source = record(args.out, args.allow_dirty)  # before any work
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    init_default_scope('mmseg')
    cfg = Config.fromfile(args.config)
    seg_cfg = cfg.model.get('segmentor', cfg.model)
    seg_cfg.data_preprocessor['size'] = tuple(args.size)
    bare = MODELS.build(ConfigDict(seg_cfg)).eval()
    space = mmseg_gearnn.build_space(SPACE)
    selection = run_selection(
        bare, space, 'random', budget=args.budget, progress=False, top=0
    )
    model = MODELS.build(
        ConfigDict(
            type='GearNNSegmentor',
            segmentor=seg_cfg,
            space=SPACE,
            adaptor=selection['selected'],
        )
    ).eval()
    model.segmentor.load_state_dict(bare.state_dict())
    base_bytes = sum(
        t.numel() * t.element_size() for t in bare.state_dict().values()
    )
    adaptor_bytes = model.gear_bank.adaptor_bytes()
    num_gears = space.num_gears - 1
    size = tuple(args.size)
    one = torch.rand(1, 3, *size)
    batch = torch.rand(args.batch, 3, *size)

    with torch.no_grad():
        # A switch alone: copying one gear's adaptor into the model.
        switches = []
        for i in range(20 * args.repeats):
            start = time.perf_counter()
            model.switch_gear(1 + i % num_gears)
            switches.append(time.perf_counter() - start)
        model.restore_base()
        # Interleaved so that machine noise hits both alike.
        bare_one, switching = [], []
        gears = iter(range(10**9))
        for _ in range(args.repeats):
            bare_one += timed(lambda: bare.predict(one, samples(1, size)), 1)
            switching += timed(
                lambda: model.predict(
                    one, samples(1, size, 1 + next(gears) % num_gears, space)
                ),
                1,
            )
        bare_samples = samples(args.batch, size)
        gear_samples = samples(args.batch, size, 1, space)
        throughput = paired_ratio(
            lambda: bare.predict(batch, bare_samples),
            lambda: model.predict(batch, gear_samples),
            args.pairs,
        )

    forward = statistics.median(bare_one)
    result = dict(
        memory_ratio_10_gears=round(
            (base_bytes + 10 * adaptor_bytes) / base_bytes, 5
        ),
        adaptor_fraction=round(adaptor_bytes / base_bytes, 6),
        switch_over_forward=round(statistics.median(switches) / forward, 6),
        throughput_ratio=round(throughput['median'], 4),
        throughput_ratio_spread={
            k: round(v, 4) for k, v in throughput.items() if k != 'median'
        },
        throughput_goal='>= 0.98 at batch 8, one gear',
        switch_us=round(statistics.median(switches) * 1e6, 1),
        forward_ms_batch1=round(forward * 1000, 2),
        gear_changing_forward_ms_batch1=round(
            statistics.median(switching) * 1000, 2
        ),
        adaptor_tensors=len(model.adaptor_names),
        adaptor_bytes=adaptor_bytes,
        base_bytes=base_bytes,
        model=osp.relpath(args.config, REPO_ROOT),
        input_size=list(size),
        batch=args.batch,
        threads=args.threads,
        repeats=args.repeats,
        pairs=args.pairs,
        **source,
        machine=f'{platform.machine()} {platform.processor()} '
        f'{torch.get_num_threads()} threads, torch {torch.__version__}',
        command='python '
        + ' '.join([osp.relpath(sys.argv[0], REPO_ROOT)] + sys.argv[1:]),
    )
    atomic_write(args.out, json.dumps(result, indent=2) + '\n')
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
