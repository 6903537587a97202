# Copyright (c) OpenMMLab and mmseg_gearnn contributors. All rights reserved.
"""Test (and evaluate) a segmentor: mmseg 1.2.2's ``tools/test.py``
(``gearnn-test``, ``python -m mmseg_gearnn.tools.test``).

The config loads the plugin (``custom_imports`` in
``configs/_base_/gearnn_runtime.py``); this tool only parses arguments,
completes a gear config that inherits an mmseg pipeline, applies the flags,
checks the data and the checkpoint, builds the Runner and tests; the
metrics (mIoU, ...) are logged.
"""

import argparse
import glob
import os
import os.path as osp
import time
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

# Imported for its side effect: weights-only loading of mmengine checkpoints
# also for configs that do not load the plugin.
import mmseg_gearnn.utils.checkpoint  # noqa: F401
from mmseg_gearnn.engine import add_gear_distortions, use_tta
from mmseg_gearnn.utils import (
    set_data_root,
    setup_dist_train,
    show_inputs,
    skip_bad_files,
    teardown_dist,
    write_predictions,
)
from mmseg_gearnn.utils.user_errors import (
    add_debug_flag,
    check_checkpoint,
    check_data_roots,
    one_line_errors,
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='MMSeg test (and eval) a model'
    )
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='if specified, the evaluation metric results will be dumped '
        'into the directory as json',
    )
    parser.add_argument(
        '--out',
        type=str,
        help='the directory to save output prediction for offline evaluation',
    )
    parser.add_argument(
        '--show', action='store_true', help='show prediction results'
    )
    parser.add_argument(
        '--show-dir',
        help='directory where each evaluated input is drawn as the model '
        'saw it (distorted), with its prediction and a caption naming the '
        'distortion type, level and the gear used',
    )
    parser.add_argument(
        '--show-interval',
        type=int,
        default=1,
        help='with --show / --show-dir, draw the frames of every n-th test '
        'batch (default 1: every frame)',
    )
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)'
    )
    parser.add_argument(
        '--data-root',
        help='dataset folder for every dataloader of the config '
        '(e.g. ../shared/data/camvid)',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument(
        '--tta', action='store_true', help='Test time augmentation'
    )
    parser.add_argument(
        '--skip-bad-files',
        action='store_true',
        help='evaluate on past missing or corrupt image and label files '
        '(and labels outside the class range) instead of stopping: each '
        'one is logged, listed in <work-dir>/skipped_files.json and adds '
        'nothing to the metrics (needs LoadCheckedImageFromFile / '
        'LoadCheckedAnnotations in the test pipeline)',
    )
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.show_interval < 1:
        parser.error(f'--show-interval must be >= 1, got {args.show_interval}')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The run's config: the file, the flags, the gear distortions; its
    data and checkpoint checked."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root is not None:
        set_data_root(cfg, args.data_root)
    if args.skip_bad_files:
        skip_bad_files(cfg)

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join(
            './work_dirs', osp.splitext(osp.basename(args.config))[0]
        )

    # before anything is built: the data (as the user's config names it)
    # and the checkpoint
    check_data_roots(cfg, ('test_dataloader',))
    check_checkpoint(args.checkpoint)
    cfg.load_from = args.checkpoint

    # a gear config that inherits an mmseg pipeline gets the distortion
    # transform and the 'distortion' meta key
    for change in add_gear_distortions(cfg):
        print_log(change, logger='current')

    if args.show or args.show_dir:
        show_inputs(cfg, args.show_dir, args.show, args.wait_time)
        cfg.default_hooks.visualization.interval = args.show_interval

    if args.tta:
        use_tta(cfg)

    # per-image predictions, as mmseg's IoUMetric(output_dir=...) writes them
    if args.out is not None:
        write_predictions(cfg, args.out)
    return cfg


def count_drawn(show_dir: str, since: float) -> int:
    """The images written to ``show_dir`` at or after ``since``."""
    pattern = osp.join(glob.escape(show_dir), '**', '*.png')
    return sum(
        osp.getmtime(path) >= since
        for path in glob.glob(pattern, recursive=True)
    )


def main(argv: Optional[List[str]] = None) -> None:
    """Build the Runner from the config and test the checkpoint."""
    args = parse_args(argv)
    with one_line_errors(args.debug):
        cfg = build_config(args)
        started = time.time()

        # join the process group (also without CUDA)
        setup_dist_train(cfg)

        runner = Runner.from_cfg(cfg)
        runner.test()
        if args.show_dir:
            drawn = count_drawn(args.show_dir, started)
            every = (
                'every test frame'
                if args.show_interval == 1
                else f'the frames of every {args.show_interval}th test batch'
            )
            print_log(
                f'--show-dir: {drawn} frame(s) drawn to {args.show_dir} '
                f'({every})',
                logger='current',
            )
        teardown_dist()


if __name__ == '__main__':
    main()
