"""Gear learning rate on CamVid val: one gear set per rate, same base,
selection and schedule as ``benchmarks/camvid.py`` (its ``full`` profile):

    python benchmarks/gear_lr.py ../shared/data/camvid \
        --base-checkpoint BASE.pth --selection SELECTION.json \
        --lrs 0.002 0.02 0.06 0.2

Each rate trains the gears of the gear config for the profile's iterations
from the base (a benchmark stage, cached in the work dir) and evaluates
them at every level of the distortion space.
Writes ``results/gear_lr.json``: mean and clean mIoU per rate, with the
command and commit.
"""

import argparse
import json
import os.path as osp
import shlex
import sys
import time

from mmengine.registry import init_default_scope

from gearnn_bench.comparison import CamVidBenchmark
from gearnn_bench.methods import CONFIG_PATHS
from gearnn_bench.profiles import resolve_profile
from gearnn_bench.provenance import (
    RESULTS_DIR,
    add_allow_dirty,
    machine,
    record,
)
from mmseg_gearnn.utils import atomic_write
from mmseg_gearnn.utils.console import keep_warnings_in, quiet_console


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='a CamVid-layout folder')
    parser.add_argument('--base-checkpoint', required=True)
    parser.add_argument('--selection', required=True, help='selection JSON')
    parser.add_argument('--lrs', type=float, nargs='+', required=True)
    parser.add_argument('--work-dir', default='work_dirs/gear_lr')
    parser.add_argument('--out', default=osp.join(RESULTS_DIR, 'gear_lr.json'))
    add_allow_dirty(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    keep_warnings_in(args.work_dir)
    source = record(args.out, args.allow_dirty)  # before any work
    init_default_scope('mmseg')
    bench = CamVidBenchmark(
        args.data_root,
        args.work_dir,
        CONFIG_PATHS,
        # Trained on all of train, as the committed results were.
        resolve_profile('full', tune=False)[1],
        args.base_checkpoint,
    )
    base = bench.train_base()  # the given checkpoint, fingerprinted
    start = time.time()
    rates = {}
    for lr in args.lrs:
        entry = bench.gears(
            f'gears_lr{lr:g}',
            base,
            osp.abspath(args.selection),
            options={'optim_wrapper.optimizer.lr': lr},
        )
        rates[f'{lr:g}'] = dict(
            mean_miou=entry['mean_miou'], clean_miou=entry['clean_miou']
        )
        print(f'lr {lr:g}: mean {entry["mean_miou"]}', flush=True)
    results = dict(
        command=shlex.join(['python'] + sys.argv),
        **source,
        machine=machine(),
        wall_time_s=round(time.time() - start, 1),
        iters=bench.profile.iters,
        selection=osp.abspath(args.selection),
        base_checkpoint=osp.abspath(args.base_checkpoint),
        rates=rates,
    )
    atomic_write(args.out, json.dumps(results, indent=2) + '\n')
    print(f'written: {args.out}')


if __name__ == '__main__':
    with quiet_console():  # third-party warnings: the work dir's log
        main()
