"""Channels-last against the default memory format, on CPU: time of one
forward pass and of one training step of the CamVid model, in the same run:

    python benchmarks/memory_format.py            # batch 8, 240x320
    python benchmarks/memory_format.py --size 360 480 --batch 4

Rounds alternate between the formats; the median of each is reported,
with the largest difference between the two formats' outputs. Writes
``results/memory_format.json``.
"""

import argparse
import copy
import json
import os.path as osp
import shlex
import statistics
import sys
import time

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_gearnn  # noqa: F401
from gearnn_bench.provenance import (
    REPO_ROOT,
    RESULTS_DIR,
    add_allow_dirty,
    machine,
    record,
)
from mmseg_gearnn.utils import atomic_write

CONFIG = (
    'configs/gearnn/deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-240x320.py'
)
FORMATS = dict(
    default=torch.contiguous_format, channels_last=torch.channels_last
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=osp.join(REPO_ROOT, CONFIG))
    parser.add_argument('--size', type=int, nargs=2, default=(240, 320))
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument(
        '--out',
        default=osp.join(RESULTS_DIR, 'memory_format.json'),
    )
    add_allow_dirty(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    source = record(args.out, args.allow_dirty)  # before any work
    init_default_scope('mmseg')
    cfg = Config.fromfile(args.config)
    cfg.model.backbone.pretrained = None  # timing only: no weights needed
    torch.manual_seed(0)
    built = MODELS.build(cfg.model)
    models = {
        name: copy.deepcopy(built).to(memory_format=fmt)
        for name, fmt in FORMATS.items()
    }
    h, w = args.size
    inputs = torch.randn(args.batch, 3, h, w)
    metas = [dict(img_shape=(h, w), pad_shape=(h, w))] * args.batch
    target = torch.randint(0, 11, (args.batch, h // 4, w // 4))
    optims = {n: torch.optim.AdamW(m.parameters()) for n, m in models.items()}

    def forward(name):
        model = models[name].eval()
        with torch.no_grad():
            return model.encode_decode(inputs, metas)

    def train_step(name):
        model = models[name].train()
        logits = model.decode_head(model.extract_feat(inputs))
        loss = torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        optims[name].step()
        optims[name].zero_grad()

    outputs = {name: forward(name) for name in models}  # also warms up
    max_diff = (outputs['default'] - outputs['channels_last']).abs().max()
    for name in models:
        train_step(name)
    times = {(n, k): [] for n in models for k in ('forward', 'train_step')}
    for _ in range(args.rounds):
        for name in models:
            for kind, fn in (('forward', forward), ('train_step', train_step)):
                start = time.perf_counter()
                fn(name)
                times[(name, kind)].append(time.perf_counter() - start)
    median = {
        f'{n}_{k}_s': round(statistics.median(v), 4)
        for (n, k), v in times.items()
    }
    results = dict(
        command=shlex.join(['python'] + sys.argv),
        **source,
        machine=machine(),
        threads=torch.get_num_threads(),
        batch=args.batch,
        size=list(args.size),
        rounds=args.rounds,
        **median,
        forward_speedup=round(
            median['default_forward_s'] / median['channels_last_forward_s'], 2
        ),
        train_step_speedup=round(
            median['default_train_step_s']
            / median['channels_last_train_step_s'],
            2,
        ),
        max_output_difference=float(max_diff),
    )
    atomic_write(args.out, json.dumps(results, indent=2) + '\n')
    print(json.dumps(results, indent=2))


if __name__ == '__main__':
    main()
