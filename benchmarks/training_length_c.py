"""Training length on CamVid-C's tuning split: the recipe, stability
training, mixed augmentation and per-corruption BN at several iteration
counts, from one clean base:

    python benchmarks/training_length_c.py ../shared/data/camvid \
        --base-checkpoint BASE.pth --iters 100 300 \
        --reuse work_dirs/benchmark_camvid_c

Each count ``N`` trains every method for ``N`` iterations (the recipe: its
robust base, mixed augmentation, for ``N``, then its gears for ``N``) as
the CamVid-C benchmark's stages, in ``work_dir/it{N}``, and evaluates it
on the tuning split (``train_tune`` frames of the profile, never val) under
the trained corruptions at every severity, and clean. ``--reuse`` takes
the models of a finished CamVid-C run at its own count instead of training
them again. Writes ``results/training_length_c.{json,png}``: per method
and count the tuning mean (mean mIoU over the trained corruptions x
severities), clean mIoU, total training iterations and batches per gear,
with the command and commit.
"""

import argparse
import json
import os.path as osp
import shlex
import sys
import time

from mmengine.registry import init_default_scope

from gearnn_bench.corruption_profile import (
    gear_count,
    resolve_corruption_profile,
)
from gearnn_bench.corruption_recipe import RECIPE
from gearnn_bench.corruption_stages import (
    MAPPING_KEY,
    SWEEP_KEY,
    CorruptionStages,
)
from gearnn_bench.provenance import (
    RESULTS_DIR,
    add_allow_dirty,
    machine,
    record,
)
from mmseg_gearnn.utils import atomic_write
from mmseg_gearnn.utils.console import keep_warnings_in, quiet_console

METHODS = ('gearnn_recipe', 'stability', 'mixed_aug', 'bn_stats')
TUNE = 'tune'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='a CamVid-layout folder')
    parser.add_argument('--base-checkpoint', required=True)
    parser.add_argument('--iters', type=int, nargs='+', required=True)
    parser.add_argument(
        '--methods', nargs='+', default=list(METHODS), choices=METHODS
    )
    parser.add_argument(
        '--profile', default='full', choices=('full', 'light', 'quick')
    )
    parser.add_argument(
        '--reuse',
        help="a finished CamVid-C run's work dir: its models at its own "
        'count are evaluated, not trained again',
    )
    parser.add_argument(
        '--work-dir', default='work_dirs/training_length_c', help='stages'
    )
    parser.add_argument(
        '--out', default=osp.join(RESULTS_DIR, 'training_length_c.json')
    )
    parser.add_argument(
        '--note',
        help='a statement recorded in the results (e.g. the default '
        'iterations chosen from the curve, and why)',
    )
    add_allow_dirty(parser)
    return parser.parse_args(argv)


class LengthStages(CorruptionStages):
    """The CamVid-C stages of one count, on the tuning split."""

    def point(self, method: str, base: str) -> dict:
        p = self.corruption_profile
        alpha = {'model.alpha': p.alpha}
        trained = {SWEEP_KEY: 'trained'}
        if method == 'mixed_aug':
            return self.fine_tuned('mixed_aug', 'mixed', base, trained, TUNE)
        if method == 'stability':
            return self.fine_tuned(
                f'stability_alpha{p.alpha:g}',
                'stability',
                base,
                dict(alpha, **trained),
                TUNE,
            )
        if method == 'bn_stats':
            options = dict(trained, **{MAPPING_KEY: p.gear_mappings[0]})
            return self.gears(
                'bn_stats', base, 'bn', options=options, split=TUNE
            )
        return self.recipe_gears(base, split=TUNE)[0]

    def reused_point(self, method: str, run_dir: str) -> dict:
        """The model of ``method`` from a finished CamVid-C run's work dir,
        evaluated on the tuning split (stage ``reused_{method}``)."""
        p = self.corruption_profile
        iters = self.profile.iters
        trained = {SWEEP_KEY: 'trained'}
        stage = dict(
            mixed_aug=('mixed_aug', 'mixed', trained),
            stability=(
                f'stability_alpha{p.alpha:g}',
                'stability',
                dict(trained, **{'model.alpha': p.alpha}),
            ),
            bn_stats=(
                'bn_stats',
                'gearnn',
                {
                    **trained,
                    MAPPING_KEY: p.gear_mappings[0],
                    'model.adaptor': 'bn',
                },
            ),
        )
        if method == RECIPE:
            with open(osp.join(run_dir, RECIPE, 'result.json')) as f:
                selection = json.load(f)['result']['selection']['file']
            options = dict(
                self.recipe_options(), **{'model.adaptor': selection}
            )
            name, key = RECIPE, 'gearnn_distill'
        else:
            name, key, options = stage[method]
        ckpt = osp.join(run_dir, name, f'iter_{iters}.pth')
        if not osp.isfile(ckpt):
            raise FileNotFoundError(f'{ckpt} not found: run camvid_c first')
        return self.evaluated(f'reused_{method}', key, ckpt, options, TUNE)


def main(argv=None):
    args = parse_args(argv)
    keep_warnings_in(args.work_dir)
    source = record(args.out, args.allow_dirty)  # before any work
    start = time.time()
    init_default_scope('mmseg')
    curve, stages_log = {}, {}
    run_iters = None
    if args.reuse:
        run_iters = resolve_corruption_profile(args.profile)[1].stages.iters
    for iters in args.iters:
        name, profile = resolve_corruption_profile(args.profile, iters=iters)
        stages = LengthStages(
            args.data_root,
            osp.join(args.work_dir, f'it{iters}'),
            profile,
            profile_name=name,
            base_checkpoint=args.base_checkpoint,
        )
        base = stages.train_base()
        for method in args.methods:
            begin = time.time()
            if iters == run_iters:
                entry = stages.reused_point(method, args.reuse)
            else:
                entry = stages.point(method, base)
            gears = None
            if method in (RECIPE, 'bn_stats'):
                gears = gear_count(
                    profile, profile.gear_mappings[0], method == RECIPE
                )
            curve.setdefault(method, {})[str(iters)] = dict(
                tune_mean=round(entry['mean_miou'], 2),
                tune_clean=round(entry['clean_miou'], 2),
                total_iters=2 * iters if method == RECIPE else iters,
                per_gear_batches=round(iters / gears, 2) if gears else None,
            )
            print(
                f'[training-length-c] {method} at {iters}: '
                f'{curve[method][str(iters)]} ({time.time() - begin:.0f} s)',
                flush=True,
            )
        stages_log[str(iters)] = dict(stages.cache.stages)
        _write(args, source, curve, stages_log, start, profile)
    return curve


def _write(args, source, curve, stages_log, start, profile) -> None:
    results = dict(
        command='python ' + shlex.join(sys.argv),
        **source,
        wall_time_s=round(time.time() - start, 1),
        machine=machine(),
        split='tune',
        tune_frames=list(profile.tune_images),
        evaluated='trained corruptions x severities (tune_mean) and clean',
        methods=curve,
        # LengthStages.point's recipe: gears over mixed augmentation.
        recipe_robust_base='mixed_aug',
        note=args.note,
        stages=stages_log,
    )
    atomic_write(args.out, json.dumps(results, indent=2))
    _plot(curve, osp.splitext(args.out)[0] + '.png')
    print('written:', args.out)


def _plot(curve: dict, path: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, points in curve.items():
        xs = sorted(points, key=int)
        ax.plot(
            [int(x) for x in xs],
            [points[x]['tune_mean'] for x in xs],
            marker='o',
            label=method,
        )
    ax.set_xlabel('training iterations (the recipe: of its gears)')
    ax.set_ylabel('tuning-split mean mIoU (trained corruptions)')
    ax.set_title('CamVid-C training length')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == '__main__':
    with quiet_console():  # third-party warnings: the work dir's log
        main()
