"""The CamVid-C benchmark: the standard corruptions on CamVid, one command:

    python benchmarks/camvid_c.py ../shared/data/camvid \
        --base-checkpoint BASE.pth
    python benchmarks/camvid_c.py ../shared/data/camvid --quick

Every method (clean, mixed augmentation, stability training, per-corruption
BN, online BN, TENT, GearNN, and the recipe: distilled gears and a clean
gear over a robust model, distilled from it or from the clean model (both
chosen on the tuning split), routed by the ConfidentGearRouter whose
threshold leave-one-corruption-out chooses on the tuning split)
starts from one clean base (given, or trained
on the ``train_fit`` frames), trains on those frames under the 15
benchmark corruptions of ``imagecorruptions`` and is evaluated on the
``val`` split clean, under the 15 x 5 benchmark conditions and the 4 x 5
held-out ones. Writes ``benchmarks/results/camvid_c.{md,json,png}``
(``camvid_c_quick.*`` in the work dir with ``--quick``) with P, mPC, rPC,
mCE, mIoU per corruption and severity, the held-out mean and the goals.
One progress line per stage; a rerun reuses every finished stage and every
corrupted frame.
"""

import argparse
import os.path as osp
import shlex
import sys
from dataclasses import replace

from gearnn_bench.corruption_online import OPTIONAL_METHODS
from gearnn_bench.corruption_profile import resolve_corruption_profile
from gearnn_bench.corruption_report import evaluate_goals, write_results
from gearnn_bench.corruption_stages import CorruptionStages
from gearnn_bench.provenance import (
    RESULTS_DIR,
    add_allow_dirty,
    record,
)
from mmseg_gearnn.utils.console import keep_warnings_in, quiet_console


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='a CamVid-layout folder')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='3 corruptions x 2 severities, a few frames and iterations '
        '(a smoke run)',
    )
    parser.add_argument(
        '--profile',
        default='full',
        choices=('full', 'light'),
        help='full: 24 val frames; light: 12 of them and 8 tuning frames '
        '(see corruption_profile.PROFILES)',
    )
    parser.add_argument(
        '--methods',
        nargs='+',
        help="run only these methods' stages (and the clean reference), "
        'write no results: a share of a run that another process can run '
        'beside it on the same work dir; a run without --methods reuses '
        'them',
    )
    parser.add_argument(
        '--optional-methods',
        nargs='+',
        default=[],
        choices=OPTIONAL_METHODS,
        help='also run these methods, which a run skips by default '
        '(recipe_online_bn: the recipe with online BN statistics on top '
        'of its gears, momentum 0.1, one set per gear)',
    )
    parser.add_argument(
        '--per-severity-gears',
        action='store_true',
        help='also train one gear per corruption and severity (75 gears, '
        'each seeing 1/75 of the batches)',
    )
    parser.add_argument(
        '--prepare-frames',
        action='store_true',
        help='only corrupt the val frames into the cache (no model needed), '
        'then stop',
    )
    parser.add_argument(
        '--work-dir',
        help='stages, frames and logs (default '
        'work_dirs/benchmark_camvid_c[_quick])',
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
        '--seeds',
        type=int,
        nargs='+',
        help='training seeds of the recipe, mixed augmentation and '
        'stability training (the first must be 0; default: 0)',
    )
    add_allow_dirty(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    profile_name = 'quick' if args.quick else args.profile
    name, profile = resolve_corruption_profile(
        profile_name, seeds=args.seeds, iters=args.iters
    )
    if args.per_severity_gears:
        profile = replace(
            profile, gear_mappings=('per_corruption', 'per_severity')
        )
        name += ', per-severity gears too'
    work_dir = args.work_dir or (
        'work_dirs/benchmark_camvid_c' + ('_quick' if args.quick else '')
    )
    out_dir = args.out_dir or (work_dir if args.quick else RESULTS_DIR)
    keep_warnings_in(work_dir)
    stages = CorruptionStages(
        args.data_root,
        work_dir,
        profile,
        profile_name=name,
        base_checkpoint=args.base_checkpoint,
        optional_methods=args.optional_methods,
    )
    if args.prepare_frames:
        stages.prepare()
        return None
    if args.methods:
        stages.run_methods(args.methods)
        return None
    stem = 'camvid_c' + ('_quick' if args.quick else '')
    # Checked before any work; the commit is the code the run starts with.
    source = record(osp.join(out_dir, stem + '.json'), args.allow_dirty)
    command = 'python ' + shlex.join(sys.argv if argv is None else argv)
    results = stages.run(command=command, source=source)
    results['goals'] = evaluate_goals(results, stages.draws)
    paths = write_results(results, out_dir, stem)
    print(open(paths['md'], encoding='utf-8').read())
    print('written:', ', '.join(paths.values()))
    return paths


if __name__ == '__main__':
    with quiet_console():  # third-party warnings: the work dir's log
        main()
