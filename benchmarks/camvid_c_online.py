"""A gear plus label-free online adaptation on CamVid-C's tuning split: the
recipe's gears with and without online BN or TENT on top, and what each
costs per frame:

    python benchmarks/camvid_c_online.py ../shared/data/camvid \
        --profile light --base-checkpoint BASE.pth \
        --reuse work_dirs/benchmark_camvid_c

The recipe's gears over the robust base (stability training by default),
trained for the tuning split by a finished CamVid-C run (``--reuse``: its
stages are linked into the work dir, read only, and never trained again),
are evaluated on the tuning split's trained sweep (``train_tune`` frames,
every trained corruption and severity, and clean) as they are (``none``)
and under each adaptation (``corruption_online.ADAPTATIONS``), each frame
on its routed gear with one adapted state per gear. Reports per
adaptation the tuning mean (mean mIoU over the trained corruptions x
severities), the clean mIoU, their margins over the plain gears, the
evaluation's wall time per frame (data loading included) and the
model-only CPU time per frame against the plain gears in the same process,
with a paired bootstrap interval over the tuning frames for each margin.
Writes ``camvid_c_online.json`` in ``--out-dir`` (default: the work dir).
"""

import argparse
import json
import os
import os.path as osp
import shlex
import sys
import time

import torch
from mmengine.registry import init_default_scope

from gearnn_bench.corruption_online import ADAPTATIONS
from gearnn_bench.corruption_profile import resolve_corruption_profile
from gearnn_bench.corruption_recipe import ROBUST_BASES, TEACHERS
from gearnn_bench.corruption_stages import CorruptionStages
from gearnn_bench.provenance import add_allow_dirty, machine, record
from mmseg_gearnn.utils import atomic_write
from mmseg_gearnn.utils.console import keep_warnings_in, quiet_console


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='a CamVid-layout folder')
    parser.add_argument(
        '--profile', default='light', choices=('full', 'light', 'quick')
    )
    parser.add_argument(
        '--base-checkpoint', help='the clean base the CamVid-C run used'
    )
    parser.add_argument(
        '--reuse',
        help="a finished CamVid-C run's work dir: its stages are linked "
        'into the work dir (read only)',
    )
    parser.add_argument(
        '--work-dir', default='work_dirs/camvid_c_online', help='stages'
    )
    parser.add_argument('--out-dir', help='results folder (the work dir)')
    parser.add_argument(
        '--adaptations',
        nargs='+',
        default=['online_bn', 'tent'],
        choices=[a for a in ADAPTATIONS if a != 'none'],
    )
    parser.add_argument('--robust', default='stability', choices=ROBUST_BASES)
    parser.add_argument(
        '--teacher',
        default='base',
        choices=TEACHERS,
        help="the gears' distillation teacher: the robust base or the "
        'clean model',
    )
    parser.add_argument(
        '--cost-rounds',
        type=int,
        default=6,
        help='timed rounds of the model-only cost (0: skip)',
    )
    add_allow_dirty(parser)
    return parser.parse_args(argv)


def link_stages(run_dir: str, work_dir: str) -> list:
    """Links every stage folder of ``run_dir`` that ``work_dir`` lacks."""
    os.makedirs(work_dir, exist_ok=True)
    linked = []
    for name in sorted(os.listdir(run_dir)):
        source = osp.abspath(osp.join(run_dir, name))
        target = osp.join(work_dir, name)
        if osp.isdir(source) and not osp.lexists(target):
            os.symlink(source, target)
            linked.append(name)
    return linked


def main(argv=None):
    args = parse_args(argv)
    out_dir = args.out_dir or args.work_dir
    out = osp.join(out_dir, 'camvid_c_online.json')
    source = record(out, args.allow_dirty)  # before any work
    start = time.time()
    torch.set_num_threads(1)
    keep_warnings_in(args.work_dir)
    if args.reuse:
        link_stages(args.reuse, args.work_dir)
    name, profile = resolve_corruption_profile(args.profile)
    stages = CorruptionStages(
        args.data_root,
        args.work_dir,
        profile,
        profile_name=name,
        base_checkpoint=args.base_checkpoint,
    )
    init_default_scope('mmseg')
    base = stages.train_base()
    entries = {}
    for adaptation in ['none'] + list(args.adaptations):
        begin = time.time()
        entries[adaptation] = stages.recipe_online(
            base, adaptation, robust=args.robust, teacher=args.teacher
        )
        print(
            f'[camvid-c-online] {adaptation}: tune mean '
            f'{entries[adaptation]["mean_miou"]:.2f}, clean '
            f'{entries[adaptation]["clean_miou"]:.2f} '
            f'({time.time() - begin:.0f} s)',
            flush=True,
        )
    plain = entries['none']
    cost = None
    if args.cost_rounds:
        cost = stages.online_cost(
            base,
            list(args.adaptations),
            args.robust,
            rounds=args.cost_rounds,
            teacher=args.teacher,
        )
    margins = stages.online_margins(
        list(args.adaptations), args.robust, teacher=args.teacher
    )
    methods = {}
    for adaptation, entry in entries.items():
        methods[adaptation] = dict(
            stage=stages.online_name(
                adaptation, args.robust, teacher=args.teacher
            )
            + '@tune',
            tune_mean=round(entry['mean_miou'], 2),
            tune_clean=round(entry['clean_miou'], 2),
            margin_mean=round(entry['mean_miou'] - plain['mean_miou'], 2),
            margin_clean=round(entry['clean_miou'] - plain['clean_miou'], 2),
            eval_s_per_frame=entry['eval_s_per_frame'],
            eval_ratio_to_plain=round(
                entry['eval_s_per_frame'] / plain['eval_s_per_frame'], 3
            ),
            adaptation=ADAPTATIONS[adaptation],
        )
        if adaptation in margins['margins']:
            methods[adaptation]['margin_interval'] = margins['margins'][
                adaptation
            ]
    results = dict(
        command='python ' + shlex.join(sys.argv if argv is None else argv),
        **source,
        wall_time_s=round(time.time() - start, 1),
        machine=machine(),
        profile=name,
        split='tune',
        tune_frames=list(profile.tune_images),
        robust_base=args.robust,
        teacher=args.teacher,
        methods=methods,
        model_cost=cost,
        stages=dict(stages.cache.stages),
    )
    os.makedirs(out_dir, exist_ok=True)
    atomic_write(out, json.dumps(results, indent=2))
    print(json.dumps(dict(methods=methods, model_cost=cost), indent=2))
    print('written:', out)
    return results


if __name__ == '__main__':
    with quiet_console():
        main()
