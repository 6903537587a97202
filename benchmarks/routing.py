"""Gears without metadata: a distortion estimator routes each image.

    python benchmarks/routing.py --work-dir work_dirs/demo

Needs a finished ``make demo`` (its base, selection and gears). Trains a
``DistortionEstimator`` on the config's training images, then measures on
the val split, in one run:

- the estimator's exact-gear and within-one-level accuracy per type;
- mIoU averaged over every distorted level with oracle gears (metadata)
  and with estimated gears (``routing='estimate'``), same model;
- the estimator's time per image over one segmentor forward (batch 1).

Writes ``benchmarks/results/routing.json``.
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
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.apis import evaluate_levels, last_checkpoint
from mmseg_gearnn.apis.estimator import (
    clean_images,
    evaluate_estimator,
    raw_image_dataset,
    train_estimator,
)
from mmseg_gearnn.evaluation.report import atomic_write

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
GEAR_CONFIG = osp.join(
    ROOT,
    'configs/gearnn/gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-'
    '96x128.py',
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=GEAR_CONFIG)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--num-images', type=int, default=100)
    parser.add_argument(
        '--out', default=osp.join(ROOT, 'benchmarks/results/routing.json')
    )
    return parser.parse_args()


def main():
    args = parse_args()
    init_default_scope('mmseg')
    cfg = Config.fromfile(args.config)
    selection = osp.join(args.work_dir, 'selection.json')
    checkpoint = last_checkpoint(osp.join(args.work_dir, 'gears'))
    if checkpoint is None or not osp.isfile(selection):
        raise FileNotFoundError(
            f'no finished GearNN run in {args.work_dir}: run `make demo`'
        )

    start = time.time()
    estimator = train_estimator(
        cfg.distortion_space,
        raw_image_dataset(cfg.train_dataloader.dataset),
        num_per_gear=args.num_images,
        seed=0,
    )
    estimator_file = osp.join(args.work_dir, 'estimator.pth')
    estimator.save(estimator_file)
    train_s = time.time() - start
    val_images = raw_image_dataset(cfg.val_dataloader.dataset)
    accuracy = evaluate_estimator(estimator, val_images, num_images=60, seed=1)

    reports = {}
    for routing in ('metadata', 'estimate'):
        options = {'model.adaptor': selection}
        if routing == 'estimate':
            options.update(
                {
                    'model.estimator': estimator_file,
                    'model.routing': 'estimate',
                }
            )
        reports[routing] = evaluate_levels(
            args.config,
            checkpoint,
            osp.join(args.work_dir, f'eval_routing_{routing}'),
            options,
        )

    # Cost: the estimator on one image over one batch-1 forward.
    model = MODELS.build(cfg.model).eval()
    size = tuple(cfg.img_size)
    image = clean_images(val_images, 1, seed=0)[0]
    inputs = torch.rand(1, 3, *size)
    sample = [
        SegDataSample(
            metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size)
        )
    ]
    forward, estimate = [], []
    with torch.no_grad():
        for _ in range(30):
            t = time.perf_counter()
            model.segmentor.predict(inputs, sample)
            forward.append(time.perf_counter() - t)
            t = time.perf_counter()
            estimator.predict_gears([image])
            estimate.append(time.perf_counter() - t)

    per_type = accuracy['per_type']
    types = [t for t in per_type if t != 'clean']
    result = dict(
        dataset='ProceduralStreetDataset val (60 images, 96x128), demo '
        'space; not CamVid',
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
        estimator_training_s=round(train_s, 1),
        levels_oracle=reports['metadata']['levels'],
        levels_estimated=reports['estimate']['levels'],
        command='python '
        + ' '.join([osp.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
    )
    atomic_write(args.out, json.dumps(result, indent=2) + '\n')
    print(
        json.dumps(
            {k: v for k, v in result.items() if not k.startswith('levels')},
            indent=2,
        )
    )


if __name__ == '__main__':
    main()
