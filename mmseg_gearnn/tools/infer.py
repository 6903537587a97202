"""Segment an image folder or a video frame by frame with a GearNN model.

Frames come as the camera delivers them (distorted already); each goes
through the config's test pipeline without its distortion transform, to a
gear chosen by its distortion metadata, the distortion estimator or the
default gear; masks (at the frame's size), optional overlays and a
per-frame report (frames.json, frames.csv) go to --out-dir. Run as
``gearnn-infer``, ``python -m mmseg_gearnn.tools.infer`` or
``tools/infer.py``.
"""

import argparse
import json
from typing import List, Optional

from mmengine.config import DictAction
from tqdm import tqdm

from mmseg_gearnn.apis import FrameSource, GearNNInferencer, format_record
from mmseg_gearnn.models.routing import ROUTING_POLICIES
from mmseg_gearnn.utils.user_errors import (
    add_debug_flag,
    check_checkpoint,
    check_file,
    one_line_errors,
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='GearNN config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--input', required=True, help='image folder, image or video file'
    )
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--gears-file', help='compact gears file')
    parser.add_argument(
        '--metadata',
        help='per-frame distortion metadata (JSON or CSV: frame,type,level)',
    )
    parser.add_argument('--estimator', help='distortion estimator file')
    parser.add_argument(
        '--routing',
        choices=list(ROUTING_POLICIES),
        help="the model's routing policy (default: the config's)",
    )
    parser.add_argument(
        '--batch-size',
        type=int,
        default=1,
        help='the most consecutive frames of one gear run together',
    )
    parser.add_argument(
        '--overlay', action='store_true', help='also write overlays'
    )
    parser.add_argument('--device', default='cpu')
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
        for flag in ('gears_file', 'metadata', 'estimator'):
            check_file(getattr(args, flag), f'--{flag.replace("_", "-")}')
        frames = FrameSource(args.input)
        inferencer = GearNNInferencer(
            args.config,
            args.checkpoint,
            gears_file=args.gears_file,
            estimator=args.estimator,
            routing=args.routing,
            device=args.device,
            cfg_options=args.cfg_options,
        )
        with tqdm(total=len(frames) or None, unit='frame') as bar:

            def on_frame(record: dict) -> None:
                bar.write(format_record(record))
                bar.update(1)

            result = inferencer(
                args.input,
                args.out_dir,
                metadata=args.metadata,
                batch_size=args.batch_size,
                overlay=args.overlay,
                on_frame=on_frame,
            )
    result.pop('frames')
    print(json.dumps(result, indent=2))
    print(f'results written to {args.out_dir}')


if __name__ == '__main__':
    main()
