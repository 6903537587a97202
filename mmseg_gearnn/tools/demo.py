"""The embedded end-to-end GearNN job: no download, minutes on a CPU.

Trains a small clean model on procedural street scenes, selects the
distortion-sensitive tensors under a memory budget, trains one adaptor per
distortion level, and reports mIoU of the clean model and of GearNN per
distortion type and level (table and PNG plot). Run as ``gearnn-demo``,
``python -m mmseg_gearnn.tools.demo`` or ``tools/demo.py``.
"""

import argparse
import os.path as osp
from typing import List, Optional

from mmengine.config import DictAction

from mmseg_gearnn.apis import run_gearnn
from mmseg_gearnn.utils.console import quiet_console

PACKAGE = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The configs an installed package ships (.mim), else the checkout's.
INSTALLED_CONFIGS = osp.join(PACKAGE, '.mim', 'configs', 'gearnn')
CONFIGS = (
    INSTALLED_CONFIGS
    if osp.isdir(INSTALLED_CONFIGS)
    else osp.join(osp.dirname(PACKAGE), 'configs', 'gearnn')
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--base-config',
        default=osp.join(
            CONFIGS, 'deeplabv3plus_r18-tiny_1xb8-1k_procedural-96x128.py'
        ),
        help='config of the clean base model',
    )
    parser.add_argument(
        '--gear-config',
        default=osp.join(
            CONFIGS,
            'gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-96x128.py',
        ),
        help='config of the gear training',
    )
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument(
        '--method',
        default='fisher',
        help='scoring method of the adaptor selection',
    )
    parser.add_argument(
        '--budget',
        type=float,
        default=0.002,
        help='adaptor bytes per gear, as a fraction of the '
        "model (0.002: the paper's 0.2%%)",
    )
    parser.add_argument(
        '--selection-steps',
        type=int,
        default=8,
        help='batches per distortion level for the selection scores',
    )
    parser.add_argument(
        '--base-checkpoint',
        help='a trained base checkpoint: skips training the base',
    )
    parser.add_argument(
        '--retrain-base',
        action='store_true',
        help='train the base even if work-dir holds one',
    )
    parser.add_argument(
        '--base-options',
        nargs='+',
        action=DictAction,
        help='--cfg-options for the base config',
    )
    parser.add_argument(
        '--gear-options',
        nargs='+',
        action=DictAction,
        help='--cfg-options for the gear config',
    )
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of every stage'
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help="torch's CPU threads (the figures depend on it; 0: torch's own "
        'count, from the cores and OMP_NUM_THREADS)',
    )
    parser.add_argument(
        '--verbose',
        action='store_true',
        help="mmengine's full console output (the work dir keeps it anyway)",
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with quiet_console(verbose=args.verbose):
        run_gearnn(
            args.base_config,
            args.gear_config,
            args.work_dir,
            method=args.method,
            budget=args.budget,
            selection_steps=args.selection_steps,
            base_options=args.base_options,
            gear_options=args.gear_options,
            reuse_base=not args.retrain_base,
            base_checkpoint=args.base_checkpoint,
            seed=args.seed,
            threads=args.threads or None,
        )


if __name__ == '__main__':
    main()
