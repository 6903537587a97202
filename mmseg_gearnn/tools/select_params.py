# Copyright (c) mmseg_gearnn contributors. All rights reserved.
"""Select the adaptor of a trained segmentor under a memory budget
(``gearnn-select``, ``python -m mmseg_gearnn.tools.select_params``).

Scores every candidate tensor (parameters and BatchNorm running statistics)
for distortion sensitivity, solves the budgeted 0/1 knapsack and writes a
selection file (JSON). The work is done by
:func:`mmseg_gearnn.selection.run_selection_from_config`.

Example::

    python tools/select_params.py CONFIG --checkpoint BASE.pth \\
        --method fisher --budget 0.002 --out work_dirs/x/selection.json
    # the same scores, another budget (no scoring):
    python tools/select_params.py CONFIG --scores-from \\
        work_dirs/x/selection.json --budget 0.01 --out work_dirs/x/1pct.json

Under a launcher (``tools/dist_select_params.sh CONFIG N ...`` or
``torchrun ... --launcher pytorch``) the selection runs once, on rank 0, as
in a single process (same data, same scores, same file), and is written
once; the other ranks wait for it (see
:func:`mmseg_gearnn.utils.run_on_main_process`) and end with the same
record, so that a distributed pipeline may follow it with gear training.
"""

import argparse
import os
import os.path as osp
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

from mmseg_gearnn.selection import (
    DEFAULT_KNAPSACK_VALUE,
    DEFAULT_NORMALIZE,
    KNAPSACK_VALUES,
    NORMALIZATIONS,
    available_methods,
    get_scorer,
    reselect,
    run_selection_from_config,
    space_from_config,
)
from mmseg_gearnn.utils import run_on_main_process, set_data_root
from mmseg_gearnn.utils.console import quiet_console
from mmseg_gearnn.utils.user_errors import (
    add_debug_flag,
    check_checkpoint,
    check_data_roots,
    check_file,
    one_line_errors,
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Select the distortion-sensitive tensors (the adaptor) '
        'of a segmentor under a memory budget'
    )
    parser.add_argument('config', help='config with a distortion_space')
    parser.add_argument(
        '--checkpoint',
        help='base (clean) checkpoint; with --scores-from, checked against '
        'the one the scores were computed on',
    )
    parser.add_argument(
        '--scores-from',
        metavar='SELECTION',
        help='select again, under this budget, from the scores of a '
        'selection file instead of scoring the model',
    )
    parser.add_argument(
        '--method',
        choices=available_methods(),
        help='scoring method (default: fisher)',
    )
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument(
        '--budget', type=float, help='budget as a fraction of the model bytes'
    )
    budget.add_argument('--budget-bytes', type=int, help='budget in bytes')
    parser.add_argument(
        '--out',
        help='selection file; default '
        'work_dirs/{config name}/selection_{method}.json',
    )
    parser.add_argument(
        '--steps',
        type=int,
        default=10,
        help='SGD steps (weight_change) or batches (fisher, rgn) per level',
    )
    parser.add_argument(
        '--levels-subset',
        nargs='+',
        help='score on these levels only: gear ids, type:level or types',
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--normalize', default=DEFAULT_NORMALIZE, choices=NORMALIZATIONS
    )
    parser.add_argument(
        '--value',
        choices=KNAPSACK_VALUES,
        help="a tensor's knapsack value: its score (tensor, the default) or "
        'its score times its number of elements (element: the budget goes '
        'to the most sensitive bytes, kernels included); with '
        "--scores-from, default: its file's",
    )
    parser.add_argument(
        '--granularity-bytes',
        type=int,
        help='knapsack size unit; default keeps it at <= 16384 units',
    )
    parser.add_argument(
        '--respect-budget',
        action='store_true',
        help='make the bn / all baselines keep to the budget',
    )
    parser.add_argument(
        '--exclude-modules',
        nargs='*',
        metavar='MODULE',
        help='modules whose tensors are never selected; modules run only '
        'for the training loss (auxiliary_head) are never candidates '
        'whatever this says',
    )
    parser.add_argument(
        '--lr', type=float, default=0.01, help='weight_change SGD lr'
    )
    parser.add_argument(
        '--momentum', type=float, default=0.9, help='weight_change momentum'
    )
    parser.add_argument(
        '--dataloader',
        default='train_dataloader',
        help='config key of the dataloader to score on',
    )
    parser.add_argument(
        '--data-root',
        help='dataset folder for every dataloader of the config',
    )
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu'
    )
    parser.add_argument(
        '--top', type=int, default=20, help='tensors shown in the table'
    )
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bar'
    )
    parser.add_argument(
        '--verbose',
        action='store_true',
        help="mmengine's log lines (time, logger, level) on the console "
        'instead of plain lines',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher: the selection runs on rank 0 only',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.scores_from is None:
        if args.checkpoint is None:
            parser.error('give --checkpoint (or --scores-from)')
    elif args.out is None or args.method is not None:
        parser.error(
            '--scores-from takes the scoring method of its file and needs '
            '--out (not --method)'
        )
    args.method = args.method or 'fisher'
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv: Optional[List[str]] = None) -> None:
    """Load the config and run the selection."""
    args = parse_args(argv)
    with one_line_errors(args.debug):
        select_params(args)


def select_params(args: argparse.Namespace) -> None:
    """Check the inputs, then select (on the main process)."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root is not None:
        set_data_root(cfg, args.data_root)
    # before the model is built: the files and the data to score on
    check_checkpoint(args.checkpoint, '--checkpoint')
    check_file(args.scores_from, '--scores-from')
    if args.scores_from is None:
        check_data_roots(cfg, (args.dataloader,))
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if cfg.get('custom_imports', None):
        import_modules_from_strings(**cfg.custom_imports)
    out = args.out or osp.join(
        'work_dirs',
        osp.splitext(osp.basename(args.config))[0],
        f'selection_{args.method}.json',
    )
    # The options the method takes, from the flags of the same names.
    options = {k: getattr(args, k) for k in get_scorer(args.method).options}

    def select() -> dict:
        if args.scores_from is not None:
            return reselect(
                args.scores_from,
                budget=args.budget,
                budget_bytes=args.budget_bytes,
                granularity=args.granularity_bytes,
                value=args.value,
                space=space_from_config(cfg),
                checkpoint=args.checkpoint,
                out=out,
                top=args.top,
            )
        return run_selection_from_config(
            cfg,
            args.checkpoint,
            args.method,
            config_path=args.config,
            dataloader=args.dataloader,
            device=args.device,
            budget=args.budget,
            budget_bytes=args.budget_bytes,
            levels=args.levels_subset,
            steps=args.steps,
            seed=args.seed,
            normalize=args.normalize,
            granularity=args.granularity_bytes,
            respect_budget=args.respect_budget,
            exclude_modules=args.exclude_modules,
            value=args.value or DEFAULT_KNAPSACK_VALUE,
            out=out,
            progress=not args.no_progress,
            top=args.top,
            **options,
        )

    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {})
    # The selection's log is its result: plain lines for people.
    with quiet_console(verbose=args.verbose, plain_info=True):
        run_on_main_process(select, args.launcher, dist_cfg)


if __name__ == '__main__':
    main()
