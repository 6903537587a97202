# Stability-training baseline (Zheng et al., CVPR 2016) on the embedded demo:
# the clean model's DeepLabV3+, data and schedule, trained from scratch with
# the task loss on the clean image plus alpha * KL(p(x) || p(x')) towards a
# copy x' distorted by a random (type, level) of the demo space. One model
# for all levels; test it like the clean model. To fine-tune a clean model
# instead, add `--cfg-options load_from=BASE.pth` (bare checkpoints load).
_base_ = ['./deeplabv3plus_r18-tiny_1xb8-1k_procedural-96x128.py']

model = dict(
    _delete_=True,
    type='StabilitySegmentor',
    segmentor=_base_.model,
    data_preprocessor=_base_.model.data_preprocessor,
    alpha=1.0,
)

# img stays clean; the distorted copy travels in the metainfo.
train_pipeline = [
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
