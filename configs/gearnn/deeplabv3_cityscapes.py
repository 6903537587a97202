# GearNN on DeepLabV3 R50-D8, Cityscapes 512x1024: the paper's setting.
# The paper's three distortions at ten levels each; one gear per level.
#
# One command selects the adaptor on mmseg's released base and trains the
# gears (data under data/cityscapes, as in mmseg):
#     python tools/train.py configs/gearnn/deeplabv3_cityscapes.py
# The selection (0.2% of the model per gear, Fisher scores on distorted
# training batches) is written to work_dirs/deeplabv3_cityscapes/
# selection.json. mIoU per distortion type and level:
#     python tools/test.py configs/gearnn/deeplabv3_cityscapes.py \
#         work_dirs/deeplabv3_cityscapes/iter_8000.pth
# (the checkpoint holds the gears and so the adaptor they were trained with).
#
# Another base: --cfg-options load_from=BASE.pth (e.g. trained with
# configs/gearnn/deeplabv3_cityscapes_base.py). A selection made apart
# (tools/select_params.py ... --out selection.json):
# --cfg-options model.adaptor=selection.json.
_base_ = ['./deeplabv3_cityscapes_base.py']

# The base: mmseg's released DeepLabV3 R50-D8 Cityscapes 512x1024 (40k).
# Without a base checkpoint the run stops (AdaptorSelectionHook): gears
# adapt a trained base, never random weights.
load_from = _base_.released_base

# The shipped gear recipe: beside the label loss, each gear learns the
# base's own prediction on the clean frame (a per-pixel KL term,
# DistilledGearNNSegmentor), chosen over plain gears on the CamVid tuning
# split (benchmarks/results/camvid.md, gearnn_recipe). The paper's plain
# gears: model.distill_weight=0 (the clean copy is then unused). The
# recipe's first step, a base fine-tuned on distorted frames:
# deeplabv3_cityscapes_mixed.py.
model = dict(
    _delete_=True,
    type='DistilledGearNNSegmentor',
    distill_weight=1.0,
    temperature=1.0,
    # load_from holds every base tensor: no ImageNet backbone to fetch.
    segmentor=dict(_base_.model, pretrained=None),
    data_preprocessor=_base_.model.data_preprocessor,
    space=_base_.distortion_space,
    # Selected on the loaded base before the gears train, written to
    # work_dir/selection.json (AdaptorSelectionHook); selection options
    # such as steps=, levels= or seed= may be added.
    adaptor=dict(budget=0.002, method='fisher'),
    default_gear=0,
)

# Every image of a batch shares one gear (draw_every = batch size), so that
# adapted BN statistics see the whole batch; the clean gear is the base and
# has nothing to learn. The clean copy, kept right before the distortion,
# is the distillation's input.
train_pipeline = _base_.train_geometry + [
    dict(type='KeepCleanCopy'),
    dict(
        type='RandomDistortion',
        space=_base_.distortion_space,
        clean_prob=0.0,
        draw_every=2,
    ),
    dict(
        type='PackSegInputs',
        meta_keys=_base_.gearnn_meta_keys + ('clean_img',),
    ),
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
custom_hooks = _base_.gearnn_hooks  # AdaptorSelectionHook included
