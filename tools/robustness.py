"""Robustness of a checkpoint: mIoU clean and at every (distortion type,
level) of the config's distortion space, as a table, CSV, JSON and plot.

    python tools/robustness.py CONFIG CHECKPOINT --work-dir DIR \
        [--name NAME] [--compare OTHER=DIR2/levels.json ...] \
        [--reference OTHER]

The config's test dataloader sweeps the space (``DistortionSweepDataset``)
and its test evaluator is a ``DistortionIoUMetric``; the configs of this
project are. Writes ``DIR/levels.json`` (the metric's report; give it to
``--compare`` of a later run to draw several methods on one plot) and
``DIR/robustness.{md,csv,json,png}``. Under the standard corruptions
(``configs/_base_/distortions/corruptions_*.py``) the report starts with
P, mPC, rPC and the group means of every method, and mCE against the
``--reference`` method (e.g. the clean model's levels given to
``--compare``).
"""

import argparse

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.apis import evaluate_levels
from mmseg_gearnn.evaluation import load_reports, write_robustness_report
from mmseg_gearnn.utils import set_data_root


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', required=True, help='output folder')
    parser.add_argument(
        '--name', default='model', help="this checkpoint's name in reports"
    )
    parser.add_argument(
        '--compare',
        nargs='+',
        default=[],
        metavar='NAME=LEVELS_JSON',
        help='earlier reports (levels.json) to put beside it',
    )
    parser.add_argument(
        '--reference',
        help='the method (--name or a --compare name) that corruption '
        'errors (CE, mCE) are relative to, e.g. the clean model',
    )
    parser.add_argument(
        '--data-root', help='dataset folder for every dataloader'
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config (key=value)',
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    others = {}
    for item in args.compare:
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            raise SystemExit(f'--compare wants NAME=LEVELS_JSON, got {item!r}')
        others[name] = path
    if args.reference not in (None, args.name, *others):
        raise SystemExit(
            f'--reference {args.reference!r} is neither --name nor a '
            f'--compare name ({[args.name, *others]})'
        )
    init_default_scope('mmseg')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root is not None:
        set_data_root(cfg, args.data_root)
    report = evaluate_levels(cfg, args.checkpoint, args.work_dir)
    results, clean = load_reports(others)
    results = {args.name: report['levels'], **results}
    clean = {args.name: report['clean'], **clean}
    paths = write_robustness_report(
        results, args.work_dir, clean, reference=args.reference
    )
    print(open(paths['md'], encoding='utf-8').read())
    print('written:', ', '.join(paths.values()))


if __name__ == '__main__':
    main()
