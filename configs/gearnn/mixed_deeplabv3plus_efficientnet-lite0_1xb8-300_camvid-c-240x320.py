# Step 1 of the CamVid-C recipe: the robust base. The clean CamVid base
# fine-tuned (every weight) on frames under a random corruption and severity
# of the recipe's training corruptions, clean frames at the rate of one
# corruption; evaluated like the clean model on every benchmark and held-out
# corruption. Step 2 is ./gearnn-recipe_..._camvid-c-240x320.py.
#   python tools/train.py <this file> --cfg-options load_from=BASE.pth
_base_ = [
    './mixed_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-240x320.py',
    '../_base_/distortions/corruptions_recipe.py',
]

distortion_space = dict(_delete_=True, **_base_.recipe_eval_space)
train_pipeline = _base_.train_pipeline[:-2] + [
    dict(
        type='RandomDistortion',
        space=_base_.corruption_train_space,
        clean_prob=1 / 15,
    ),
    _base_.train_pipeline[-1],
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
test_pipeline = _base_.test_pipeline[:2] + [
    dict(type='RequestedDistortion', space=_base_.recipe_eval_space),
    *_base_.test_pipeline[3:],
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(
    dataset=dict(
        space=dict(_delete_=True, **_base_.recipe_eval_space),
        dataset=dict(pipeline=test_pipeline),
    )
)
val_evaluator = dict(space=dict(_delete_=True, **_base_.recipe_eval_space))
test_evaluator = val_evaluator
