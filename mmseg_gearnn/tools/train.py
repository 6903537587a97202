# Copyright (c) OpenMMLab and mmseg_gearnn contributors. All rights reserved.
"""Train a segmentor: mmseg 1.2.2's ``tools/train.py`` for this plugin
(``gearnn-train``, ``python -m mmseg_gearnn.tools.train``).

The config loads the plugin (``custom_imports`` in
``configs/_base_/gearnn_runtime.py``); this tool only parses arguments,
completes a gear config that inherits an mmseg pipeline
(:func:`mmseg_gearnn.engine.complete_gear_config`), checks the data and
the checkpoint to start from, builds the Runner and trains.

Distributed (``tools/dist_train.sh CONFIG N`` or ``torchrun
--nproc_per_node=N tools/train.py CONFIG --launcher pytorch``): the process
group is set up by :func:`mmseg_gearnn.utils.setup_dist_train`, which also
works on CPU-only machines (``gloo``), and a config without
``model_wrapper_cfg`` is wrapped with ``GearNNDistributedDataParallel``.
"""

import argparse
import logging
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

# Imported for its side effect: weights-only loading of mmengine checkpoints
# (load_from, --resume) also for configs that do not load the plugin.
import mmseg_gearnn.utils.checkpoint  # noqa: F401
from mmseg_gearnn.engine import complete_gear_config
from mmseg_gearnn.utils import (
    enable_amp,
    resume_from_work_dir,
    set_data_root,
    setup_dist_train,
    teardown_dist,
)
from mmseg_gearnn.utils.user_errors import (
    add_debug_flag,
    check_checkpoint,
    check_data_roots,
    one_line_errors,
)

# What a training run reads: validation runs within it.
DATALOADERS = ('train_dataloader', 'val_dataloader')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work_dir automatically',
    )
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training',
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
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The run's config: the file, the flags, the gear completion; its
    data and starting checkpoint checked."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root is not None:
        set_data_root(cfg, args.data_root)

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join(
            './work_dirs', osp.splitext(osp.basename(args.config))[0]
        )

    # enable automatic-mixed-precision training
    if args.amp and not enable_amp(cfg):
        print_log(
            'AMP training is already enabled in your config.',
            logger='current',
            level=logging.WARNING,
        )

    # before anything is built: the data (as the user's config names it)
    check_data_roots(cfg, DATALOADERS)

    # resume from the latest checkpoint in work_dir (load_from, e.g. the
    # base of a gear config, starts a run that has none yet)
    cfg.resume = False
    if args.resume:
        latest = resume_from_work_dir(cfg)
        print_log(
            f'resuming from {latest}'
            if latest
            else f'no checkpoint in {cfg.work_dir} to resume from: starting',
            logger='current',
        )

    check_checkpoint(cfg.get('load_from', None), 'load_from')

    # a gear config that inherits an mmseg pipeline gets the distortion
    # transform, the 'distortion' meta key and the gear hooks
    for change in complete_gear_config(cfg):
        print_log(change, logger='current')
    return cfg


def main(argv: Optional[List[str]] = None) -> None:
    """Build the Runner from the config and train."""
    args = parse_args(argv)
    with one_line_errors(args.debug):
        cfg = build_config(args)

        # join the process group (also without CUDA) and pick the DDP wrapper
        setup_dist_train(cfg)

        # build the runner from config
        if 'runner_type' not in cfg:
            runner = Runner.from_cfg(cfg)
        else:
            runner = RUNNERS.build(cfg)

        runner.train()
        teardown_dist()


if __name__ == '__main__':
    main()
