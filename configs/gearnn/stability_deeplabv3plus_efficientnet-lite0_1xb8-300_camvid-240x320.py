# Stability-training baseline (Zheng et al., CVPR 2016) on CamVid: the clean
# base model fine-tuned with the task loss on the clean frame plus
# alpha * KL(p(x) || p(x')) towards a copy x' distorted by a random
# (type, level) of the CamVid space. One model for all levels; test it like
# the clean model. alpha is chosen on the tuning split of train by
# benchmarks/camvid.py (never on val).
#   python tools/train.py <this file> --cfg-options load_from=BASE.pth \
#       model.alpha=1.0
_base_ = [
    './mixed_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-240x320.py'
]

model = dict(
    _delete_=True,
    type='StabilitySegmentor',
    segmentor=_base_.model,
    data_preprocessor=_base_.model.data_preprocessor,
    alpha=1.0,
)

# img stays clean; the distorted copy travels in the metainfo.
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
        type='PairedDistortion',
        space=_base_.distortion_space,
        clean_prob=0.0,
    ),
    dict(
        type='PackSegInputs',
        meta_keys=_base_.meta_keys + ('distorted_img', 'paired_distortion'),
    ),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
