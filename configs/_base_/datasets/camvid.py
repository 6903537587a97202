# CamVid (11 classes, 480x360; label 11 is ignored) under the CamVid
# distortion space.
#
# Where the data is: set CAMVID_ROOT (e.g. CAMVID_ROOT=../shared/data/camvid),
# else 'data/camvid'. data_root is substituted into the dataloaders when this
# file is loaded, so `--cfg-options data_root=...` alone does NOT move them;
# override the dataloaders' keys instead:
#   --cfg-options train_dataloader.dataset.data_root=DIR \
#                 val_dataloader.dataset.data_root=DIR \
#                 test_dataloader.dataset.dataset.data_root=DIR
_base_ = ['../distortions/camvid.py']

dataset_type = 'CamVidDataset'
data_root = '{{$CAMVID_ROOT:data/camvid}}'
crop_size = (240, 320)  # (h, w)

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

train_pipeline = [
    dict(type='LoadCheckedImageFromFile'),
    dict(type='LoadCheckedAnnotations'),
    # 0.75-1.5 of the native 480x360 keeps every frame at least as large as
    # the crop, so batches need no label padding.
    dict(
        type='RandomResize',
        scale=(480, 360),
        ratio_range=(0.75, 1.5),
        keep_ratio=True,
    ),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomDistortion',
        space=_base_.distortion_space,
        clean_prob=0.25,
    ),
    dict(type='PackSegInputs', meta_keys=meta_keys),
]
# Inference at the training resolution (240x320; predictions are resized
# back and scored on the native 480x360 labels, as in mmseg); clean unless
# a DistortionSweepDataset requests a level.
test_pipeline = [
    dict(type='LoadCheckedImageFromFile'),
    dict(type='Resize', scale=(320, 240), keep_ratio=True),
    dict(type='RequestedDistortion', space=_base_.distortion_space),
    dict(type='LoadCheckedAnnotations'),
    dict(type='PackSegInputs', meta_keys=meta_keys),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='train', seg_map_path='trainannot'),
        pipeline=train_pipeline,
    ),
)
# Validation during training: the clean val split.
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='val', seg_map_path='valannot'),
        pipeline=test_pipeline,
    ),
)
# Testing: every val frame clean and under every (type, level) of the space,
# in gear order. The CamVid test split is held out for independent
# evaluation; whoever has it overrides data_prefix.
test_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='DistortionSweepDataset',
        space=_base_.distortion_space,
        include_clean=True,
        dataset=dict(
            type=dataset_type,
            data_root=data_root,
            data_prefix=dict(img_path='val', seg_map_path='valannot'),
            pipeline=test_pipeline,
        ),
    ),
)
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
