"""What label-free test-time adaptation costs per frame, on CPU: the CamVid
model bare, with online BN statistics and with TENT, in the same run:

    python benchmarks/tta_cost.py                 # batch 8, 240x320
    python benchmarks/tta_cost.py --rounds 20 --threads 2

Every method predicts the same batch (random weights and inputs: costs do
not depend on them) under ``torch.no_grad()``, as mmengine's test loop
calls it, with channels-last weights, as the CamVid configs run. Each
round times every method next to the bare segmentor (a pair, in
alternating order; the methods in rotating order), so that machine noise
hits both sides of a pair alike; a method's cost is the median over rounds
of its time over the bare segmentor's in its pair, with the spread of those
ratios. Ratios are taken on the process's CPU time, which other processes
on a shared machine hardly change (with one thread, the default: more
threads add the time they spin waiting), and also given on wall time, with
the load average before and after. Writes ``results/tta_cost.json``.
"""

import argparse
import json
import os
import os.path as osp
import shlex
import statistics
import sys
import time
from typing import Tuple

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmseg_gearnn  # noqa: F401
from gearnn_bench.provenance import REPO_ROOT as ROOT
from gearnn_bench.provenance import add_allow_dirty, machine, record
from mmseg_gearnn.utils.io import atomic_write

CONFIGS = 'configs/gearnn/'
BASE = 'deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-240x320.py'
WALL, CPU = 0, 1  # indices of predict()'s times
# Method name -> (config, model overrides).
METHODS = dict(
    online_bn=(
        'online-bn_deeplabv3plus_efficientnet-lite0_camvid-240x320.py',
        dict(),
    ),
    online_bn_momentum=(
        'online-bn_deeplabv3plus_efficientnet-lite0_camvid-240x320.py',
        dict(momentum=0.1),
    ),
    tent=('tent_deeplabv3plus_efficientnet-lite0_camvid-240x320.py', dict()),
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, nargs=2, default=(240, 320))
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--rounds', type=int, default=8)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument(
        '--out', default=osp.join(ROOT, 'benchmarks/results/tta_cost.json')
    )
    add_allow_dirty(parser)
    return parser.parse_args()


def build(config: str, **overrides) -> torch.nn.Module:
    cfg = Config.fromfile(osp.join(ROOT, CONFIGS, config))
    segmentor = cfg.model.get('segmentor', cfg.model)
    segmentor.backbone.pretrained = None  # timing only: no weights needed
    cfg.model.update(overrides)
    return MODELS.build(cfg.model)


def main():
    args = parse_args()
    source = record(args.out, args.allow_dirty)  # before any work
    torch.set_num_threads(args.threads)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    bare = build(BASE)
    models = dict(bare=bare)
    for name, (config, overrides) in METHODS.items():
        models[name] = build(config, **overrides)
        models[name].segmentor.load_state_dict(bare.state_dict())
    for model in models.values():
        model.eval().to(memory_format=torch.channels_last)
    h, w = args.size
    inputs = torch.randn(args.batch, 3, h, w)
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))

    def predict(name: str) -> Tuple[float, float]:
        """Wall and CPU seconds of one batch."""
        samples = [SegDataSample(metainfo=meta) for _ in range(args.batch)]
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            models[name].predict(inputs, samples)
        return time.perf_counter() - wall, time.process_time() - cpu

    methods = list(METHODS)
    for name in models:  # warm-up
        predict(name)
    load_before = os.getloadavg()
    times = {name: [] for name in methods}
    bare_times = {name: [] for name in methods}
    for i in range(args.rounds):
        for name in methods[i % len(methods) :] + methods[: i % len(methods)]:
            if i % 2:
                times[name].append(predict(name))
                bare_times[name].append(predict('bare'))
            else:
                bare_times[name].append(predict('bare'))
                times[name].append(predict(name))

    def per_frame_ms(pairs, clock):
        seconds = statistics.median(pair[clock] for pair in pairs)
        return round(seconds / args.batch * 1000, 2)

    def ratios(name, clock):
        return sorted(
            t[clock] / b[clock] for t, b in zip(times[name], bare_times[name])
        )

    results = {}
    for name in methods:
        cpu = ratios(name, CPU)
        results[name] = dict(
            config=CONFIGS + METHODS[name][0],
            overrides=METHODS[name][1],
            cpu_ms_per_frame=per_frame_ms(times[name], CPU),
            wall_ms_per_frame=per_frame_ms(times[name], WALL),
            ratio_to_bare=round(statistics.median(cpu), 3),
            ratio_min=round(cpu[0], 3),
            ratio_max=round(cpu[-1], 3),
            wall_ratio_to_bare=round(statistics.median(ratios(name, WALL)), 3),
        )
    bare_all = [t for name in methods for t in bare_times[name]]
    summary = dict(
        command=shlex.join(['python'] + sys.argv),
        **source,
        machine=machine(),
        threads=torch.get_num_threads(),
        model=CONFIGS + BASE,
        batch=args.batch,
        size=list(args.size),
        rounds=args.rounds,
        load_average_1min=[load_before[0], os.getloadavg()[0]],
        bare_cpu_ms_per_frame=per_frame_ms(bare_all, CPU),
        bare_wall_ms_per_frame=per_frame_ms(bare_all, WALL),
        methods=results,
    )
    atomic_write(args.out, json.dumps(summary, indent=2) + '\n')
    print(json.dumps(summary, indent=2))


if __name__ == '__main__':
    main()
