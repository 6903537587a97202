"""Load test: many frames through the inferencer, a gear change on each.

    python benchmarks/gear_switch_load.py [--frames 10000] [--size H W]

Builds :class:`GearNNInferencer` on the demo's gear config (random
weights: memory does not depend on them, so no checkpoint is needed) and
segments ``--frames`` small frames one by one with
``GearNNInferencer.infer_frame``, each frame's distortion metadata naming
the next gear of the table (clean included), so that every frame switches
the adaptor in place. Nothing of a frame is kept.

Measured after ``--warmup`` frames (allocator pools, lazily built caches
and every gear's first switch are in place by then) and at the end:

- ``rss_*_mb``: the resident set size (``VmRSS`` in ``/proc/self/status``);
- ``peak_rss_*_mb``: the peak resident set size so far
  (``resource.getrusage`` ``ru_maxrss``);
- ``growth_mb``: ``rss_end_mb - rss_start_mb``; ``rss_trace_mb`` samples
  the RSS every ``--trace-every`` frames in between.

A frame at 64x64 carries about 130 KiB of logits, so keeping every
frame's output would grow the RSS by over 1 GiB in 10,000 frames.

Writes ``benchmarks/results/gear_switch_load.json``.
"""

import argparse
import gc
import json
import os
import os.path as osp
import platform
import resource
import sys
import time
from typing import Callable, Optional

import numpy as np
import torch

from gearnn_bench.provenance import (
    REPO_ROOT,
    RESULTS_DIR,
    add_allow_dirty,
    record,
)

DEFAULT_CONFIG = osp.join(
    REPO_ROOT,
    'configs/gearnn/gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-'
    '96x128.py',
)
DEFAULT_OUT = osp.join(RESULTS_DIR, 'gear_switch_load.json')


def rss_mb() -> float:
    """The current resident set size in MiB (``VmRSS``)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError('no VmRSS in /proc/self/status')


def peak_rss_mb() -> float:
    """The peak resident set size in MiB (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_inferencer(config: str = DEFAULT_CONFIG):
    """The inferencer on ``config``'s model with random weights."""
    import mmseg_gearnn  # noqa: F401
    from mmseg_gearnn.apis import GearNNInferencer

    return GearNNInferencer(config, device='cpu')


def run_load(
    inferencer,
    frames: int,
    size=(64, 64),
    warmup: int = 200,
    trace_every: int = 1000,
    on_frame: Optional[Callable] = None,
    seed: int = 0,
) -> dict:
    """Segments ``frames`` frames, a gear change on every frame.

    Args:
        inferencer (GearNNInferencer): the inferencer.
        frames (int): frames after the warm-up.
        size (tuple): (h, w) of the frames.
        warmup (int): frames before the first measurement.
        trace_every (int): RSS sample interval in frames.
        on_frame (callable, optional): called with ``(mask, record)`` of
            each measured frame.
        seed (int): seed of the frame contents.

    Returns:
        dict: the measurements (see the module docstring).
    """
    space = inferencer.space
    num_gears = space.num_gears
    if num_gears < 2:
        raise ValueError('the space has no distorted gear to switch to')
    records = [space.record(*space.level_of(g)) for g in range(num_gears)]
    rng = np.random.default_rng(seed)
    images = [
        rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(7)
    ]
    model = inferencer.model
    switches = 0

    def one(i: int):
        nonlocal switches
        gear = i % num_gears
        before = model.gear_bank.active
        mask, record = inferencer.infer_frame(
            images[i % len(images)], f'frame_{i:06d}', records[gear]
        )
        if record['gear'] != gear:
            raise RuntimeError(
                f'frame {i} was routed to gear {record["gear"]}, not {gear}'
            )
        switches += model.gear_bank.active != before
        return mask, record

    with torch.no_grad():
        for i in range(warmup):
            one(i)
        gc.collect()
        rss_start, peak_start = rss_mb(), peak_rss_mb()
        switches = 0
        trace = []
        start = time.perf_counter()
        for i in range(warmup, warmup + frames):
            out = one(i)
            if on_frame is not None:
                on_frame(*out)
            del out
            if (i - warmup + 1) % trace_every == 0:
                trace.append(round(rss_mb(), 2))
    seconds = time.perf_counter() - start
    gc.collect()
    rss_end, peak_end = rss_mb(), peak_rss_mb()
    return dict(
        frames=frames,
        warmup_frames=warmup,
        size=list(size),
        num_gears=num_gears,
        gear_switches=switches,
        rss_start_mb=round(rss_start, 2),
        rss_end_mb=round(rss_end, 2),
        growth_mb=round(rss_end - rss_start, 2),
        peak_rss_start_mb=round(peak_start, 2),
        peak_rss_end_mb=round(peak_end, 2),
        peak_growth_mb=round(peak_end - peak_start, 2),
        rss_trace_mb=trace,
        trace_every=trace_every,
        seconds=round(seconds, 2),
        ms_per_frame=round(1000.0 * seconds / frames, 3),
    )


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--frames', type=int, default=10000)
    parser.add_argument('--size', type=int, nargs=2, default=(64, 64))
    parser.add_argument('--warmup', type=int, default=200)
    parser.add_argument('--trace-every', type=int, default=1000)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out', default=DEFAULT_OUT)
    add_allow_dirty(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    source = record(args.out, args.allow_dirty)  # before any work
    torch.set_num_threads(args.threads)
    from mmseg_gearnn.utils.io import atomic_write

    inferencer = build_inferencer(args.config)
    result = run_load(
        inferencer,
        args.frames,
        size=tuple(args.size),
        warmup=args.warmup,
        trace_every=args.trace_every,
    )
    result = dict(
        command=' '.join([osp.relpath(sys.argv[0], REPO_ROOT)] + sys.argv[1:]),
        config=osp.relpath(args.config, REPO_ROOT),
        threads=args.threads,
        torch=torch.__version__,
        python=platform.python_version(),
        machine=f'{platform.machine()}, {os.cpu_count()} CPUs',
        **source,
        **result,
    )
    atomic_write(args.out, json.dumps(result, indent=2) + '\n')
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
