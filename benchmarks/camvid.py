"""The CamVid robustness benchmark, one command:

    python benchmarks/camvid.py ../shared/data/camvid
    python benchmarks/camvid.py ../shared/data/camvid --quick
    python benchmarks/camvid.py ../shared/data/camvid --extended
    python benchmarks/camvid.py ../shared/data/camvid --full-resolution \
        --base-iters 4000 --iters 1000          # the run to report, on a GPU

Trains the clean base once (cached in the work dir; or ``--base-checkpoint``),
then every baseline and GearNN from it, evaluates all on the folder's ``val``
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

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.apis.benchmark import (
    CamVidBenchmark,
    resolve_profile,
    write_results,
)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = dict(
    base='deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-240x320.py',
    gearnn='gearnn_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-240x320.py',
    mixed='mixed_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-240x320.py',
    stability='stability_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-'
    '240x320.py',
)
CONFIG_PATHS = {
    k: osp.join(ROOT, 'configs/gearnn', v) for k, v in CONFIGS.items()
}
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
        help='also every scoring method at the main budget, the budget '
        'curve, the stability alpha grid and GearNN on the mixed model '
        "(reuses the full run's stages; over an hour more on 2 CPU cores)",
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
        '--alphas', type=float, nargs='+', help='stability weights tried'
    )
    parser.add_argument(
        '--no-gears-on-mixed-aug',
        action='store_true',
        help='skip GearNN on the mixed-augmentation base',
    )
    parser.add_argument(
        '--scorings',
        nargs='+',
        help='scoring methods at the main budget (the first is gearnn)',
    )
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
                osp.join(ROOT, TEN_LEVELS)
            ).distortion_space.to_dict(),
        )
    suffix += resolution
    # --extended shares the full run's stages; --quick keeps its own.
    work_dir = args.work_dir or (
        'work_dirs/benchmark_camvid'
        + ('_quick' if args.quick else '')
        + resolution
    )
    out_dir = args.out_dir or (
        work_dir if args.quick else osp.join(ROOT, 'benchmarks/results')
    )
    name, profile = resolve_profile(
        profile,
        iters=args.iters,
        base_iters=args.base_iters,
        curve_budgets=tuple(args.curve_budgets or ()) or None,
        alphas=tuple(args.alphas or ()) or None,
        scorings=tuple(args.scorings or ()) or None,
        gears_on_mixed_aug=False if args.no_gears_on_mixed_aug else None,
        **overrides,
    )
    benchmark = CamVidBenchmark(
        args.data_root,
        work_dir,
        CONFIG_PATHS,
        profile=profile,
        base_checkpoint=args.base_checkpoint,
    )
    benchmark.profile_name = name
    command = 'python ' + shlex.join(sys.argv)
    results = benchmark.run(command=command, repo_dir=ROOT)
    paths = write_results(results, out_dir, 'camvid' + suffix)
    print(open(paths['md'], encoding='utf-8').read())
    print('written:', ', '.join(paths.values()))


if __name__ == '__main__':
    main()
