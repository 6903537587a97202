# The base model of GearNN on Cityscapes: mmseg's DeepLabV3 R50-D8 512x1024,
# with a test pipeline that evaluates every (distortion type, level) of the
# gear table, clean included, in one `tools/test.py` run.
_base_ = [
    '../_base_/gearnn_runtime.py',
    '../_base_/distortions/paper_10_levels.py',
    'mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py',
]

# mmseg's released DeepLabV3 R50-D8 Cityscapes 512x1024 (40k): the base the
# gear recipe starts from.
released_base = (
    'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/'
    'deeplabv3_r50-d8_512x1024_40k_cityscapes/'
    'deeplabv3_r50-d8_512x1024_40k_cityscapes_20200605_022449-acadc2f8.pth'
)

# mmseg's Cityscapes training geometry, before the gear configs' own
# distortion steps.
train_geometry = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(2048, 1024),
        ratio_range=(0.5, 2.0),
        keep_ratio=True,
    ),
    dict(type='RandomCrop', crop_size=_base_.crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
]

# The images are distorted as a camera would deliver them (before resizing).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RequestedDistortion', space=_base_.distortion_space),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs', meta_keys=_base_.gearnn_meta_keys),
]
sweep_dataset = dict(
    type='DistortionSweepDataset',
    space=_base_.distortion_space,
    dataset=dict(
        type=_base_.dataset_type,
        data_root=_base_.data_root,
        data_prefix=dict(
            img_path='leftImg8bit/val', seg_map_path='gtFine/val'
        ),
        pipeline=test_pipeline,
    ),
)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(_delete_=True, **sweep_dataset))
test_evaluator = dict(
    _delete_=True,
    type='DistortionIoUMetric',
    space=_base_.distortion_space,
)
