# Copyright (c) mmseg_gearnn contributors. All rights reserved.
"""Per-class loss weights from a config's training labels (median
frequency balancing), printed as a config line (``gearnn-class-weights``,
``python -m mmseg_gearnn.tools.class_weights``).

    python tools/class_weights.py CONFIG [--power 1.0] [--data-root DIR]

Give the printed list to ``ClassWeightedCrossEntropyLoss(class_weight=...)``
in the model's ``loss_decode``. The work is done by
:mod:`mmseg_gearnn.datasets.class_balance`.
"""

import argparse
from typing import List, Optional

from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.datasets import label_pixel_counts, median_frequency_weights
from mmseg_gearnn.utils import set_data_root
from mmseg_gearnn.utils.user_errors import (
    add_debug_flag,
    check_data_roots,
    one_line_errors,
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config with a train_dataloader')
    parser.add_argument(
        '--power',
        type=float,
        default=1.0,
        help='exponent of the weights (0.5: square root, softer)',
    )
    parser.add_argument(
        '--data-root', help='dataset folder for every dataloader'
    )
    add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with one_line_errors(args.debug):
        class_weights(args)


def class_weights(args: argparse.Namespace) -> None:
    """Count the training labels and print the weights."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(args.config)
    if args.data_root is not None:
        set_data_root(cfg, args.data_root)
    check_data_roots(cfg, ('train_dataloader',))
    dataset_cfg = cfg.train_dataloader.dataset
    num_classes = cfg.model.decode_head.num_classes
    counts, image_pixels = label_pixel_counts(dataset_cfg, num_classes)
    names = DATASETS.get(dataset_cfg.type).METAINFO.get('classes', ())
    names = dataset_cfg.get('metainfo', {}).get('classes', names)
    weights = median_frequency_weights(
        counts, image_pixels, args.power, class_names=names
    )
    for c, (n, w) in enumerate(zip(counts, weights)):
        print(f'class {c}: {n} pixels, weight {w:.4f}')
    print(f'class_weight = {[round(w, 4) for w in weights]}')


if __name__ == '__main__':
    main()
