"""The CamVid robustness benchmark, one command:

    python benchmarks/camvid.py ../shared/data/camvid
    python benchmarks/camvid.py ../shared/data/camvid --quick
    python benchmarks/camvid.py ../shared/data/camvid --extended
    python benchmarks/camvid.py ../shared/data/camvid --full-resolution \
        --base-iters 4000 --iters 1000          # the run to report, on a GPU

Trains the clean base once (cached in the work dir; or ``--base-checkpoint``),
then every baseline and GearNN from it, on the fitting part of ``train``;
tunes every method's grid on the tuning part (the last sixth of each
sequence, ``gearnn_bench/tuning.py``), runs the seeded methods with three
seeds at their chosen values, evaluates all on the folder's ``val``
split clean and at every distortion level, and writes ``camvid.md``,
``camvid.json`` and ``camvid.png`` (``camvid_quick.*`` with ``--quick``,
``camvid_extended.*`` with ``--extended``; ``_360x480`` added with
``--full-resolution``).
A rerun reuses every finished stage. Any CamVid-layout folder works
(``train``, ``trainannot``, ``val``, ``valannot``).
"""

import argparse
import os.path as osp
import shlex
import sys

from mmengine.config import Config

from gearnn_bench.comparison import CamVidBenchmark
from gearnn_bench.methods import CONFIG_PATHS
from gearnn_bench.profiles import resolve_profile
from gearnn_bench.provenance import (
    REPO_ROOT,
    RESULTS_DIR,
    add_allow_dirty,
    record,
)
from gearnn_bench.report import write_results
from mmseg_gearnn.utils.console import keep_warnings_in, quiet_console

# --full-resolution: CamVid's native 360x480 and ten levels per type.
FULL_RESOLUTION = (360, 480)
TEN_LEVELS = 'configs/_base_/distortions/camvid_10_levels.py'


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='a CamVid-layout folder')
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument(
        '--quick',
        action='store_true',
        help='every stage on a few frames and iterations (a smoke run)',
    )
    profile.add_argument(
        '--extended',
        action='store_true',
        help='also every scoring method at the main budget and the budget '
        "curve (reuses the full run's stages; over an hour more on 2 CPU "
        'cores)',
    )
    parser.add_argument(
        '--full-resolution',
        action='store_true',
        help='train and infer at the native 360x480 (not 240x320) with ten '
        'levels per distortion type (not five): the run to report on a GPU',
    )
    parser.add_argument(
        '--work-dir',
        help='stages and cache (default '
        'work_dirs/benchmark_camvid[_quick][_360x480])',
    )
    parser.add_argument(
        '--out-dir',
        help='results folder (default benchmarks/results; the work dir '
        'with --quick)',
    )
    parser.add_argument(
        '--base-checkpoint', help='a trained clean base to start from'
    )
    parser.add_argument(
        '--iters', type=int, help='training iterations of every method'
    )
    parser.add_argument(
        '--base-iters', type=int, help='training iterations of the base'
    )
    parser.add_argument(
        '--curve-budgets',
        type=float,
        nargs='+',
        help='budgets of the budget curve (fractions, e.g. 0.002 0.01)',
    )
    parser.add_argument(
        '--methods',
        nargs='+',
        help='run only these methods (and the ones they start from)',
    )
    parser.add_argument(
        '--seeds', type=int, nargs='+', help='seeds of the seeded methods'
    )
    parser.add_argument(
        '--tune-points',
        type=int,
        help='at most this many values of each grid option (the first)',
    )
    parser.add_argument(
        '--no-tune',
        action='store_true',
        help="train on all of train at the configs' values, tune nothing",
    )
    parser.add_argument(
        '--tune-only',
        action='store_true',
        help='stop after tuning: tuning-split means and recipe candidates '
        'only, nothing on val',
    )
    parser.add_argument(
        '--out-name',
        help='results file name without suffix (default camvid[_profile])',
    )
    parser.add_argument(
        '--no-gears-on-fine-tuned',
        action='store_true',
        help='skip the gear candidates over the mixed-augmentation and '
        'stability-trained models',
    )
    parser.add_argument(
        '--scorings',
        nargs='+',
        help='scoring methods at the main budget (the first is gearnn)',
    )
    add_allow_dirty(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    profile = 'full'
    if args.quick or args.extended:
        profile = 'quick' if args.quick else 'extended'
    suffix = '' if profile == 'full' else f'_{profile}'
    resolution = ''
    overrides = {}
    if args.full_resolution:
        resolution = '_{}x{}'.format(*FULL_RESOLUTION)
        overrides = dict(
            crop_size=FULL_RESOLUTION,
            distortion_space=Config.fromfile(
                osp.join(REPO_ROOT, TEN_LEVELS)
            ).distortion_space.to_dict(),
        )
    suffix += resolution
    # --extended shares the full run's stages; --quick keeps its own.
    work_dir = args.work_dir or (
        'work_dirs/benchmark_camvid'
        + ('_quick' if args.quick else '')
        + resolution
    )
    out_dir = args.out_dir or (work_dir if args.quick else RESULTS_DIR)
    keep_warnings_in(work_dir)
    name, profile = resolve_profile(
        profile,
        iters=args.iters,
        base_iters=args.base_iters,
        curve_budgets=tuple(args.curve_budgets or ()) or None,
        methods=tuple(args.methods or ()) or None,
        seeds=tuple(args.seeds or ()) or None,
        tune_points=args.tune_points,
        tune=False if args.no_tune else None,
        tune_only=True if args.tune_only else None,
        scorings=tuple(args.scorings or ()) or None,
        gears_on_fine_tuned=False if args.no_gears_on_fine_tuned else None,
        **overrides,
    )
    out_name = args.out_name or 'camvid' + suffix
    # Checked before any work; the commit is the code the run starts with.
    source = record(osp.join(out_dir, out_name + '.json'), args.allow_dirty)
    benchmark = CamVidBenchmark(
        args.data_root,
        work_dir,
        CONFIG_PATHS,
        profile=profile,
        base_checkpoint=args.base_checkpoint,
    )
    benchmark.profile_name = name
    command = 'python ' + shlex.join(sys.argv)
    results = benchmark.run(command=command, repo_dir=REPO_ROOT)
    results.update(source)
    paths = write_results(results, out_dir, out_name)
    print(open(paths['md'], encoding='utf-8').read())
    print('written:', ', '.join(paths.values()))


if __name__ == '__main__':
    with quiet_console():  # third-party warnings: the work dir's log
        main()
