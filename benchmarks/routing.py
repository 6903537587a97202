"""Gears without metadata: a distortion estimator routes each image.

    # after `make demo` (procedural data)
    python benchmarks/routing.py --work-dir work_dirs/demo
    # any trained GearNN run, e.g. the CamVid benchmark's
    python benchmarks/routing.py --config GEAR_CONFIG --checkpoint GEARS.pth \
        --selection SELECTION.json --data-root ../shared/data/camvid \
        --work-dir work_dirs/routing_camvid

Trains a ``DistortionEstimator`` on the config's training frames (as the
test pipeline loads them, so at the resolution the distortions meet at
test time), then measures on the val split, in one run:

- the estimator's exact-gear and within-one-level accuracy per type;
- mIoU averaged over every distorted level with oracle gears (metadata)
  and with estimated gears (``routing='estimate'``), same model
  (``--oracle-levels`` reuses an earlier metadata-routed report of the
  same checkpoint);
- the estimator's time per image over one segmentor forward (batch 1);
- the throughput of :class:`GearNNInferencer` with the gear changing on
  every frame over the bare segmentor on the same packed frames.

Writes ``benchmarks/results/routing.json`` (``--out``).
"""

import argparse
import json
import os.path as osp
import statistics
import sys
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmseg_gearnn  # noqa: F401
from gearnn_bench.provenance import (
    REPO_ROOT,
    RESULTS_DIR,
    add_allow_dirty,
    record,
)
from mmseg_gearnn.apis import (
    GearNNInferencer,
    evaluate_levels,
    last_checkpoint,
)
from mmseg_gearnn.apis.estimator import (
    clean_images,
    evaluate_estimator,
    raw_image_dataset,
    train_estimator,
)
from mmseg_gearnn.distortions import CLEAN, distort
from mmseg_gearnn.utils import set_data_root
from mmseg_gearnn.utils.console import keep_warnings_in, quiet_console
from mmseg_gearnn.utils.io import atomic_write

GEAR_CONFIG = osp.join(
    REPO_ROOT,
    'configs/gearnn/gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-'
    '96x128.py',
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=GEAR_CONFIG)
    parser.add_argument(
        '--work-dir',
        default='work_dirs/demo',
        help='outputs; without --checkpoint, a finished `make demo` run',
    )
    parser.add_argument('--checkpoint', help='the trained GearNN model')
    parser.add_argument('--selection', help='its selection JSON')
    parser.add_argument('--data-root', help='dataset folder (e.g. CamVid)')
    parser.add_argument(
        '--oracle-levels',
        help='levels.json of this checkpoint with metadata routing',
    )
    parser.add_argument(
        '--num-images',
        type=int,
        default=100,
        help='training frames per gear for the estimator',
    )
    parser.add_argument(
        '--eval-images',
        type=int,
        default=60,
        help='val frames per gear for the estimator accuracy',
    )
    parser.add_argument(
        '--throughput-frames',
        type=int,
        default=42,
        help='frames for the throughput ratio (each a new gear)',
    )
    parser.add_argument('--out', default=osp.join(RESULTS_DIR, 'routing.json'))
    add_allow_dirty(parser)
    return parser.parse_args()


def _frames(space, images, count):
    """``count`` distorted frames cycling through every gear, each with
    its metadata record."""
    gears = space.gears()
    frames = []
    for i in range(count):
        gear, dtype, level = gears[i % len(gears)]
        img = images[i % len(images)]
        if dtype == CLEAN:
            frames.append((img, space.record(CLEAN)))
        else:
            rng = np.random.default_rng((2, i))
            frames.append(
                (distort(img, dtype, level, rng), space.record(dtype, level))
            )
    return frames


def throughput(inferencer, frames, rounds=4):
    """Seconds for ``frames`` through the inferencer (gear switch on every
    frame) and through the bare segmentor doing the same per-frame work
    (pack, preprocess, predict, mask to numpy); the median of ``rounds``
    rounds each, in alternating order."""
    model = inferencer.model

    def through_inferencer():
        for i, (img, meta) in enumerate(frames):
            inferencer.infer_frame(img, f'f{i}', meta)
        model.restore_base()

    def through_bare_segmentor():
        for i, (img, meta) in enumerate(frames):
            packed = inferencer.pack_frame(img, f'f{i}', meta)
            data = model.data_preprocessor(
                dict(
                    inputs=[packed['inputs']],
                    data_samples=[packed['data_samples']],
                ),
                False,
            )
            sample = model.segmentor.predict(
                data['inputs'], data['data_samples']
            )[0]
            sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)

    gear_s, bare_s = [], []
    with torch.no_grad():
        for r in range(rounds):
            # Alternate which goes first: no side gains from the other's
            # warm caches.
            runs = [
                (through_inferencer, gear_s),
                (through_bare_segmentor, bare_s),
            ]
            for fn, times in runs if r % 2 == 0 else runs[::-1]:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
    return statistics.median(gear_s), statistics.median(bare_s)


def main():
    args = parse_args()
    keep_warnings_in(args.work_dir)
    source = record(args.out, args.allow_dirty)  # before any work
    init_default_scope('mmseg')
    cfg = Config.fromfile(args.config)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    if args.checkpoint is None:
        selection = osp.join(args.work_dir, 'selection.json')
        checkpoint = last_checkpoint(osp.join(args.work_dir, 'gears'))
    else:
        selection, checkpoint = args.selection, args.checkpoint
    if not checkpoint or not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'no GearNN checkpoint ({checkpoint}): give --checkpoint, or '
            f'run `make demo` for {args.work_dir}'
        )
    if not selection or not osp.isfile(selection):
        raise FileNotFoundError(f'selection JSON not found: {selection}')
    options = {'model.adaptor': selection}
    cfg.merge_from_dict(options)

    # Training frames as the test pipeline loads them (its fixed resizes
    # kept): the val dataset config pointed at the training split.
    val_dataset = cfg.val_dataloader.dataset
    train_dataset = cfg.train_dataloader.dataset
    if 'data_prefix' in train_dataset:
        train_frames = dict(
            raw_image_dataset(val_dataset),
            data_prefix=train_dataset.data_prefix,
        )
    else:  # generated data
        train_frames = raw_image_dataset(train_dataset)
    start = time.time()
    estimator = train_estimator(
        cfg.distortion_space, train_frames, num_per_gear=args.num_images
    )
    estimator_file = osp.join(args.work_dir, 'estimator.pth')
    estimator.save(estimator_file)
    train_s = time.time() - start
    val_images = raw_image_dataset(val_dataset)
    accuracy = evaluate_estimator(
        estimator, val_images, num_images=args.eval_images, seed=1
    )

    reports = {}
    if args.oracle_levels:
        with open(args.oracle_levels, encoding='utf-8') as f:
            reports['metadata'] = json.load(f)
    for routing in ('metadata', 'estimate'):
        if routing in reports:
            continue
        extra = {}
        if routing == 'estimate':
            extra = {
                'model.estimator': estimator_file,
                'model.routing': 'estimate',
            }
        reports[routing] = evaluate_levels(
            cfg,
            checkpoint,
            osp.join(args.work_dir, f'eval_routing_{routing}'),
            extra,
        )

    # Costs, on frames at the test pipeline's resolution.
    inferencer = GearNNInferencer(cfg, checkpoint)
    model = inferencer.model
    images = clean_images(val_images, 6, seed=0)
    frames = _frames(model.space, images, args.throughput_frames)
    forward, estimate = [], []
    img, meta = frames[0]
    packed = inferencer.pack_frame(img, 'f', meta)
    data = model.data_preprocessor(
        dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']]),
        False,
    )
    with torch.no_grad():
        for _ in range(20):
            t = time.perf_counter()
            model.segmentor.predict(data['inputs'], data['data_samples'])
            forward.append(time.perf_counter() - t)
            t = time.perf_counter()
            estimator.predict_gears([img])
            estimate.append(time.perf_counter() - t)
    gear_s, bare_s = throughput(inferencer, frames)

    per_type = accuracy['per_type']
    types = [t for t in per_type if t != 'clean']
    result = dict(
        dataset=f'{cfg.val_dataloader.dataset.type} val '
        f'({args.eval_images} frames per gear for the estimator, every '
        'frame for mIoU)',
        space=cfg.distortion_space,
        estimator_exact_acc=round(
            float(np.mean([per_type[t]['exact'] for t in types])), 4
        ),
        estimator_within1_acc=round(
            float(np.mean([per_type[t]['within_one'] for t in types])), 4
        ),
        estimator_per_type=per_type,
        miou_oracle=reports['metadata']['mean_distorted'],
        miou_estimated=reports['estimate']['mean_distorted'],
        clean_miou_oracle=reports['metadata']['clean'],
        clean_miou_estimated=reports['estimate']['clean'],
        estimator_cost_ratio=round(
            statistics.median(estimate) / statistics.median(forward), 4
        ),
        estimator_ms=round(statistics.median(estimate) * 1000, 3),
        forward_ms=round(statistics.median(forward) * 1000, 3),
        throughput_ratio=round(bare_s / gear_s, 4),
        throughput_frames=len(frames),
        inferencer_s=round(gear_s, 3),
        bare_segmentor_s=round(bare_s, 3),
        estimator_training_s=round(train_s, 1),
        levels_oracle=reports['metadata']['levels'],
        levels_estimated=reports['estimate']['levels'],
        **source,
        command='python '
        + ' '.join([osp.relpath(sys.argv[0], REPO_ROOT)] + sys.argv[1:]),
    )
    atomic_write(args.out, json.dumps(result, indent=2) + '\n')
    print(
        json.dumps(
            {
                k: v
                for k, v in result.items()
                if not k.startswith('levels') and k != 'space'
            },
            indent=2,
        )
    )


if __name__ == '__main__':
    with quiet_console():  # third-party warnings: the work dir's log
        main()
