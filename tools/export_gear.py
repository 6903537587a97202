"""Export gears of a GearNN model as plain mmseg checkpoints (and ONNX).

Each gear becomes a checkpoint of the wrapped segmentor with the gear's
tensors in place, which stock mmseg loads with the base config written
beside it (``init_model(OUT/base_config.py, OUT/gear_....pth)``).
"""

import argparse
import sys

from mmengine.config import DictAction

from mmseg_gearnn.apis import export_gears


def parse_args() -> argparse.Namespace:
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
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        results = export_gears(
            args.config,
            args.checkpoint,
            args.out_dir,
            gears=args.gear,
            levels=[(t, float(level)) for t, level in args.level],
            gears_file=args.gears_file,
            onnx=args.onnx,
            onnx_shape=args.onnx_shape,
            cfg_options=args.cfg_options,
        )
    except (ValueError, RuntimeError) as err:
        sys.exit(f'export_gear.py: error: {err}')
    for r in results:
        level = '' if r['level'] is None else f' {r["level"]}'
        line = f'gear {r["gear"]} ({r["type"]}{level}): {r["checkpoint"]}'
        if 'onnx' in r:
            diff = r['onnx_max_abs_diff']
            checked = (
                'not checked: onnxruntime is not installed'
                if diff is None
                else f'onnxruntime max abs logit diff {diff:.1e}'
            )
            line += f', {r["onnx"]} ({checked})'
        print(line)
    print(
        f'base config: {args.out_dir}/base_config.py; in mmseg: '
        f"init_model('{args.out_dir}/base_config.py', "
        f"'{results[0]['checkpoint']}')"
    )


if __name__ == '__main__':
    main()
