"""Export gears of a GearNN model as plain mmseg checkpoints (and ONNX).

Each gear becomes a checkpoint of the wrapped segmentor with the gear's
tensors in place, which stock mmseg loads with the base config written
beside it (``init_model(OUT/base_config.py, OUT/gear_....pth)``); the
output says whether that config is plain mmseg or which of the plugin's
types its segmentor needs. Run as
``gearnn-export``, ``python -m mmseg_gearnn.tools.export_gear`` or
``tools/export_gear.py``.
"""

import argparse
from typing import List, Optional

from mmengine.config import DictAction

from mmseg_gearnn.apis import export_gears, export_report
from mmseg_gearnn.utils.user_errors import (
    add_debug_flag,
    check_checkpoint,
    check_file,
    one_line_errors,
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='GearNN config file')
    parser.add_argument('checkpoint', help='GearNN checkpoint file')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument(
        '--gear', type=int, nargs='+', default=[], help='gear ids to export'
    )
    parser.add_argument(
        '--level',
        nargs=2,
        action='append',
        default=[],
        metavar=('TYPE', 'LEVEL'),
        help='a distortion type and level whose gear to export (repeatable)',
    )
    parser.add_argument('--gears-file', help='compact gears file')
    parser.add_argument(
        '--onnx', action='store_true', help='also write an ONNX file per gear'
    )
    parser.add_argument(
        '--onnx-shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help="the ONNX input size (default: the data preprocessor's size)",
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value',
    )
    add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with one_line_errors(args.debug):
        # before the model is built: the files
        check_file(args.config, 'config')
        check_checkpoint(args.checkpoint)
        check_file(args.gears_file, '--gears-file')
        levels = []
        for distortion_type, level in args.level:
            try:
                levels.append((distortion_type, float(level)))
            except ValueError:
                raise ValueError(
                    f'--level {distortion_type} {level}: the level must be '
                    'a number'
                ) from None
        results = export_gears(
            args.config,
            args.checkpoint,
            args.out_dir,
            gears=args.gear,
            levels=levels,
            gears_file=args.gears_file,
            onnx=args.onnx,
            onnx_shape=args.onnx_shape,
            cfg_options=args.cfg_options,
        )
    for line in export_report(results):
        print(line)


if __name__ == '__main__':
    main()
