# Procedural street scenes (8 classes, 96x128, generated in code, no files)
# under the demo distortion space: a dataset for quick, self-contained runs.
_base_ = ['../distortions/demo.py']

dataset_type = 'ProceduralStreetDataset'
img_size = (96, 128)  # (h, w)

# PackSegInputs' meta keys: mmseg's defaults plus 'distortion'. The same
# tuple as gearnn_meta_keys in ../gearnn_runtime.py, repeated here because
# a top config inherits both files and mmengine forbids a key in two bases.
meta_keys = (
    'img_path',
    'seg_map_path',
    'ori_shape',
    'img_shape',
    'pad_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'reduce_zero_label',
    'distortion',
)

# The dataset hands over loaded images and labels: no loading transforms.
train_pipeline = [
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomDistortion',
        space=_base_.distortion_space,
        clean_prob=0.25,
    ),
    dict(type='PackSegInputs', meta_keys=meta_keys),
]
# Clean unless a DistortionSweepDataset requests a level.
test_pipeline = [
    dict(type='RequestedDistortion', space=_base_.distortion_space),
    dict(type='PackSegInputs', meta_keys=meta_keys),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        num_samples=400,
        img_size=img_size,
        seed=0,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        num_samples=60,
        img_size=img_size,
        seed=1,
        pipeline=test_pipeline,
    ),
)
# Testing: every val sample clean and under every (type, level) of the
# space, in gear order (60 x 13 items).
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='DistortionSweepDataset',
        space=_base_.distortion_space,
        include_clean=True,
        dataset=dict(
            type=dataset_type,
            num_samples=60,
            img_size=img_size,
            seed=1,
            pipeline=test_pipeline,
        ),
    ),
)
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
