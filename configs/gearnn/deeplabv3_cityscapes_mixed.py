# The first step of the gear recipe: mmseg's released DeepLabV3 R50-D8
# fine-tuned (every weight) on frames distorted by a random (type, level)
# of the gear table, clean frames at the rate of one level. The distilled
# gears then train over this model instead of the released one:
#     python tools/train.py configs/gearnn/deeplabv3_cityscapes_mixed.py
#     python tools/train.py configs/gearnn/deeplabv3_cityscapes.py \
#         --cfg-options \
#         load_from=work_dirs/deeplabv3_cityscapes_mixed/iter_4000.pth
# On CamVid, gears over the mixed-augmentation model gave the best mean on
# the tuning split (benchmarks/results/camvid.md). One model for all levels;
# tools/test.py evaluates it at every (type, level) like the base.
_base_ = ['./deeplabv3_cityscapes_base.py']

load_from = _base_.released_base
# load_from holds every base tensor: no ImageNet backbone to fetch.
model = dict(pretrained=None)

train_pipeline = _base_.train_geometry + [
    dict(
        type='RandomDistortion',
        space=_base_.distortion_space,
        clean_prob=1 / 31,  # the paper's 30 levels and the clean frame
    ),
    dict(type='PackSegInputs', meta_keys=_base_.gearnn_meta_keys),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_iters = 4000
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-5,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False,
    )
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters))
