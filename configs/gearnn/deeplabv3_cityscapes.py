# GearNN on DeepLabV3 R50-D8, Cityscapes 512x1024: the paper's setting.
# The paper's three distortions at ten levels each; one gear per level.
#
#   1. train the base (or take mmseg's released checkpoint):
#        python tools/train.py configs/gearnn/deeplabv3_cityscapes_base.py
#   2. choose the adaptor (0.2% of the model per gear):
#        python tools/select_params.py configs/gearnn/deeplabv3_cityscapes.py \
#            --checkpoint BASE.pth --method fisher --budget 0.002 \
#            --out work_dirs/deeplabv3_cityscapes/selection.json
#   3. train the gears on the frozen base:
#        python tools/train.py configs/gearnn/deeplabv3_cityscapes.py \
#            --cfg-options load_from=BASE.pth \
#            model.adaptor=work_dirs/deeplabv3_cityscapes/selection.json
#   4. mIoU per distortion type and level:
#        python tools/test.py configs/gearnn/deeplabv3_cityscapes.py \
#            work_dirs/deeplabv3_cityscapes/iter_8000.pth --cfg-options \
#            model.adaptor=work_dirs/deeplabv3_cityscapes/selection.json
_base_ = ['./deeplabv3_cityscapes_base.py']

model = dict(
    _delete_=True,
    type='GearNNSegmentor',
    segmentor=_base_.model,
    data_preprocessor=_base_.model.data_preprocessor,
    space=_base_.distortion_space,
    # 'bn' until a selection JSON is given (see step 3 above).
    adaptor='bn',
    default_gear=0,
)

# Every image of a batch shares one gear (draw_every = batch size), so that
# adapted BN statistics see the whole batch; the clean gear is the base and
# has nothing to learn.
train_pipeline = [
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
    dict(
        type='RandomDistortion',
        space=_base_.distortion_space,
        clean_prob=0.0,
        draw_every=2,
    ),
    dict(type='PackSegInputs', meta_keys=_base_.gearnn_meta_keys),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0),
)
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-5,
        power=0.9,
        begin=0,
        end=8000,
        by_epoch=False,
    )
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=8000, val_interval=2000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000)
)
custom_hooks = _base_.gearnn_hooks
