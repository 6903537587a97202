# GearNN on the CamVid EfficientNet-Lite0 base: one adaptor per
# (distortion type, level) of the CamVid space (4 types x 5 levels),
# trained on the frozen base.
#   python tools/select_params.py <this file> --checkpoint BASE.pth \
#       --method fisher --budget 0.002 --out work_dirs/camvid/selection.json
#   python tools/train.py <this file> --cfg-options load_from=BASE.pth \
#       model.adaptor=work_dirs/camvid/selection.json
_base_ = ['./deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-240x320.py']

model = dict(
    _delete_=True,
    type='GearNNSegmentor',
    segmentor=_base_.model,
    data_preprocessor=_base_.model.data_preprocessor,
    space=_base_.distortion_space,
    adaptor='bn',
    default_gear=0,
)

# One gear per batch (draw_every = batch size); the clean gear is the base.
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
        clean_prob=0.0,
        draw_every=8,
    ),
    dict(type='PackSegInputs', meta_keys=_base_.meta_keys),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_iters = 300
# Each gear holds a few small tensors (BN scales, shifts, statistics) and
# trains on about 1/20 of the batches, so it takes a high rate.
# benchmarks/camvid.py chooses it for each gear method among 0.02, 0.06 and
# 0.2 on its tuning split (frames of train, never val). Gears of every
# weight (adaptor='all') need a low one: 2e-3.
optim_wrapper = dict(optimizer=dict(lr=6e-2, weight_decay=0.0))
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=1e-5,
        begin=0,
        end=max_iters,
        by_epoch=False,
    ),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
custom_hooks = _base_.gearnn_hooks + [dict(type='ChannelsLastHook')]
