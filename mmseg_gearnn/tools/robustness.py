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
``--compare``). Run as ``gearnn-robustness``, ``python -m
mmseg_gearnn.tools.robustness`` or ``tools/robustness.py``.
"""

import argparse
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.apis import evaluate_levels
from mmseg_gearnn.evaluation import load_reports, write_robustness_report
from mmseg_gearnn.utils import set_data_root
from mmseg_gearnn.utils.user_errors import (
    add_debug_flag,
    check_checkpoint,
    check_data_roots,
    check_file,
    one_line_errors,
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
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
    add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with one_line_errors(args.debug):
        robustness(args)


def robustness(args: argparse.Namespace) -> None:
    """Check the inputs, evaluate, write the reports."""
    others = {}
    for item in args.compare:
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            raise ValueError(f'--compare wants NAME=LEVELS_JSON, got {item!r}')
        check_file(path, f'--compare {name}')
        others[name] = path
    if args.reference not in (None, args.name, *others):
        raise ValueError(
            f'--reference {args.reference!r} is neither --name nor a '
            f'--compare name ({[args.name, *others]})'
        )
    init_default_scope('mmseg')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root is not None:
        set_data_root(cfg, args.data_root)
    # before the model is built: the data and the checkpoint
    check_data_roots(cfg, ('test_dataloader',))
    check_checkpoint(args.checkpoint)
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
