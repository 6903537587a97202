# Step 1 of the CamVid-C recipe: the robust base, chosen on the tuning split
# over mixed augmentation (benchmarks/results/camvid_c.json:
# recipe_robust_base). Stability training (Zheng et al., CVPR 2016): the
# clean CamVid base fine-tuned with the task loss on the clean frame plus
# alpha * KL(p(x) || p(x')) towards a copy x' under a random corruption and
# severity of the recipe's training corruptions (alpha 3, the CamVid-C
# benchmark's). Step 2 is ./gearnn-recipe_..._camvid-c-240x320.py.
#   python tools/train.py <this file> --cfg-options load_from=BASE.pth
_base_ = [
    './mixed_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-c-240x320.py'
]

model = dict(
    _delete_=True,
    type='StabilitySegmentor',
    segmentor=_base_.model,
    data_preprocessor=_base_.model.data_preprocessor,
    alpha=3.0,
)

# img stays clean; the distorted copy travels in the metainfo.
train_pipeline = _base_.train_pipeline[:-2] + [
    dict(
        type='PairedDistortion',
        space=_base_.corruption_train_space,
        clean_prob=0.0,
    ),
    dict(
        type='PackSegInputs',
        meta_keys=_base_.meta_keys + ('distorted_img', 'paired_distortion'),
    ),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
