# Copyright (c) mmseg_gearnn contributors. All rights reserved.
"""Train a distortion estimator: the gear of an input from its pixels
(``gearnn-train-estimator``, ``python -m
mmseg_gearnn.tools.train_estimator``).

Reads the config's ``distortion_space`` and the clean images of its train
dataset (the pipeline is replaced by plain loading), trains a
:class:`~mmseg_gearnn.models.DistortionEstimator` and saves it; with
``--val-num-images`` it also reports the held-out accuracy per type on the
config's val dataset. The work is done by
:func:`mmseg_gearnn.apis.estimator.train_estimator_from_config`.

Example::

    python tools/train_estimator.py \\
        configs/gearnn/deeplabv3plus_r18-tiny_1xb8-1k_procedural-96x128.py \\
        --out work_dirs/estimator.pth --num-images 100 --val-num-images 40
"""

import argparse
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

import mmseg_gearnn  # noqa: F401  (registers the plugin's datasets)
from mmseg_gearnn.apis.estimator import train_estimator_from_config
from mmseg_gearnn.utils import set_data_root
from mmseg_gearnn.utils.user_errors import (
    add_debug_flag,
    check_data_roots,
    one_line_errors,
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Train a distortion estimator (gear from the image) '
        "for a config's distortion space"
    )
    parser.add_argument('config', help='config with a distortion_space')
    parser.add_argument(
        '--out',
        help='estimator file; default work_dirs/{config name}/estimator.pth',
    )
    parser.add_argument(
        '--num-images',
        type=int,
        default=100,
        help='clean training images (each under every gear)',
    )
    parser.add_argument(
        '--val-num-images',
        type=int,
        default=0,
        help='held-out val images to report the accuracy on (0: none)',
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--hidden-channels',
        type=int,
        default=32,
        help='MLP width (0: logistic regression)',
    )
    parser.add_argument(
        '--max-side',
        type=int,
        default=256,
        help='features from a centre crop of at most this side (0: whole)',
    )
    parser.add_argument(
        '--data-root',
        help='dataset folder for every dataloader of the config',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs',
    )
    add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    """Load the config, train, save and (optionally) evaluate."""
    args = parse_args(argv)
    with one_line_errors(args.debug):
        train_estimator(args)


def train_estimator(args: argparse.Namespace) -> None:
    """Check the data, then train the estimator."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root is not None:
        set_data_root(cfg, args.data_root)
    loaders = ('train_dataloader',)
    if args.val_num_images:
        loaders += ('val_dataloader',)
    check_data_roots(cfg, loaders)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if cfg.get('custom_imports', None):
        import_modules_from_strings(**cfg.custom_imports)
    out = args.out or osp.join(
        'work_dirs',
        osp.splitext(osp.basename(args.config))[0],
        'estimator.pth',
    )
    train_estimator_from_config(
        cfg,
        out,
        num_images=args.num_images,
        seed=args.seed,
        val_num_images=args.val_num_images,
        hidden_channels=args.hidden_channels,
        max_side=args.max_side,
    )


if __name__ == '__main__':
    main()
