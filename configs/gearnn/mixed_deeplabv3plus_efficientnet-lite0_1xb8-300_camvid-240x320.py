# Mixed-distortion augmentation baseline on CamVid: the clean base model
# fine-tuned (every weight) on frames distorted by a random (type, level) of
# the CamVid space, clean frames included at the rate of one gear. One model
# for all levels; test it like the clean model. Same schedule as the gears.
#   python tools/train.py <this file> --cfg-options load_from=BASE.pth
_base_ = ['./deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-240x320.py']

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
    dict(
        type='RandomDistortion',
        space=_base_.distortion_space,
        clean_prob=1 / 21,
    ),
    dict(type='PackSegInputs', meta_keys=_base_.meta_keys),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_iters = 300
optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=1e-6,
        begin=0,
        end=max_iters,
        by_epoch=False,
    ),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
