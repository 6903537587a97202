# The clean base model of the embedded demo: a tiny DeepLabV3+ trained on
# undistorted procedural street scenes (no download, minutes on a CPU).
# `tools/test.py` on it gives mIoU per distortion type and level.
_base_ = [
    '../_base_/gearnn_runtime.py',
    '../_base_/datasets/procedural_streets.py',
    '../_base_/models/deeplabv3plus_r18-tiny.py',
    'mmseg::_base_/default_runtime.py',
]
data_preprocessor = dict(size=_base_.img_size)
model = dict(data_preprocessor=data_preprocessor)

# Clean training data: the clean model never sees a distortion.
train_pipeline = [
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs', meta_keys=_base_.meta_keys),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

val_evaluator = dict(
    _delete_=True, type='DistortionIoUMetric', space=_base_.distortion_space
)
test_evaluator = val_evaluator

max_iters = 1000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.01),
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
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
