"""Training length on CamVid val: the methods trained from the base, at
other iteration counts than the benchmark's 100:

    python benchmarks/training_length.py ../shared/data/camvid \
        --base-checkpoint BASE.pth --iters 300 \
        --selections fisher=FISHER.json random=RANDOM.json

For each count, trains from the same base, with the configs and profile of
``benchmarks/camvid.py`` (``full``) otherwise unchanged: mixed-distortion
augmentation, per-level BN (``--methods``) and one gear set per given
selection file (``--gear-options`` overrides their gear config, e.g. its
optimiser), and with ``--on-mixed``, GearNN on the mixed model of the
same count; each is a benchmark stage, cached in the work dir, and is
evaluated at every level of the distortion space. Writes
``results/training_length.json``: mean and clean mIoU per count and
method, with the command and commit.
"""

import argparse
import json
import os.path as osp
import shlex
import sys
import time

from mmengine.config import DictAction
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
from mmseg_gearnn.selection import file_fingerprint
from mmseg_gearnn.utils import atomic_write
from mmseg_gearnn.utils.console import keep_warnings_in, quiet_console

METHODS = ('mixed', 'bn')


def selection_arg(text):
    name, sep, path = text.partition('=')
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f'expected NAME=PATH, got {text!r}')
    if not osp.isfile(path):
        raise argparse.ArgumentTypeError(f'selection not found: {path}')
    return name, osp.abspath(path)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='a CamVid-layout folder')
    parser.add_argument('--base-checkpoint', required=True)
    parser.add_argument('--iters', type=int, nargs='+', required=True)
    parser.add_argument(
        '--selections',
        type=selection_arg,
        nargs='*',
        default=[],
        metavar='NAME=PATH',
        help='gear sets to train, one per selection JSON',
    )
    parser.add_argument(
        '--gear-options',
        nargs='+',
        action=DictAction,
        default={},
        metavar='KEY=VALUE',
        help='gear config settings for the --selections gear sets',
    )
    parser.add_argument(
        '--methods',
        nargs='*',
        choices=METHODS,
        default=list(METHODS),
        help='mixed: mixed augmentation; bn: per-level BN gears',
    )
    parser.add_argument(
        '--on-mixed',
        metavar='SCORING',
        help='also GearNN with this scoring, at the profile budget, on the '
        'mixed-augmentation model of each count (needs mixed)',
    )
    parser.add_argument('--work-dir', default='work_dirs/training_length')
    parser.add_argument(
        '--out',
        default=osp.join(RESULTS_DIR, 'training_length.json'),
    )
    add_allow_dirty(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    keep_warnings_in(args.work_dir)
    source = record(args.out, args.allow_dirty)  # before any work
    if args.on_mixed and 'mixed' not in args.methods:
        raise SystemExit('training_length: --on-mixed needs --methods mixed')
    init_default_scope('mmseg')
    start = time.time()
    lengths = {}
    for iters in args.iters:
        # Trained on all of train, as the committed results were.
        _, profile = resolve_profile('full', iters=iters, tune=False)
        bench = CamVidBenchmark(
            args.data_root,
            args.work_dir,
            CONFIG_PATHS,
            profile,
            args.base_checkpoint,
        )
        base = bench.train_base()  # the given checkpoint, fingerprinted
        entries = {}
        if 'mixed' in args.methods:
            entries['mixed_aug'] = bench.fine_tuned(
                f'mixed_{iters}', 'mixed', base
            )
            if args.on_mixed:
                mixed = osp.join(
                    args.work_dir, f'mixed_{iters}', f'iter_{iters}.pth'
                )
                entries['gearnn_on_mixed_aug'] = bench.selected_gears(
                    args.on_mixed,
                    profile.budget,
                    mixed,
                    prefix=f'on_mixed_{iters}_',
                )
        for name, path in args.selections:
            entries[f'gears_{name}'] = bench.gears(
                f'{name}_{iters}',
                base,
                path,
                selection=dict(sha256=file_fingerprint(path)['sha256']),
                options=args.gear_options,
            )
        if 'bn' in args.methods:
            entries['bn_stats'] = bench.gears(f'bn_{iters}', base, 'bn')
        lengths[str(iters)] = {
            method: dict(
                mean_miou=e['mean_miou'],
                clean_miou=e['clean_miou'],
                time_s=e.get('time_s'),
            )
            for method, e in entries.items()
        }
        for method, e in entries.items():
            print(
                f'{iters} iters, {method}: mean {e["mean_miou"]}', flush=True
            )
    results = dict(
        command=shlex.join(['python'] + sys.argv),
        **source,
        machine=machine(),
        wall_time_s=round(time.time() - start, 1),
        base_checkpoint=osp.abspath(args.base_checkpoint),
        selections={name: path for name, path in args.selections},
        gear_options=args.gear_options,
        iters=lengths,
    )
    atomic_write(args.out, json.dumps(results, indent=2) + '\n')
    print(f'written: {args.out}')


if __name__ == '__main__':
    with quiet_console():  # third-party warnings: the work dir's log
        main()
