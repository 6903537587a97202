# Step 2 of the CamVid-C recipe (benchmarks/camvid_c.py: gearnn_recipe):
# one gear per training corruption and a clean gear over the robust base of
# step 1 (./mixed_..._camvid-c-240x320.py: mixed augmentation, which with
# the clean model as teacher beat stability training as the gears' base on
# the tuning split, benchmarks/results/camvid_c.json: recipe_robust_base),
# each distilled towards the clean model's prediction on the clean frame
# (DistilledGearNNSegmentor, model.teacher_checkpoint; without it, towards
# the robust base's own). Routing: ConfidentGearRouter: the metadata
# where it names a corruption of the table, else the distortion estimator's
# gear when its probability reaches the threshold, else no gear (the robust
# base); clean frames on the clean gear. The threshold is the benchmark's
# leave-one-corruption-out choice on the tuning split
# (benchmarks/results/camvid_c.json: routing.choice).
#   python tools/select_params.py <this file> --checkpoint ROBUST.pth \
#       --method fisher --budget 0.002 --out work_dirs/recipe_c/selection.json
#   python tools/train.py <this file> --cfg-options load_from=ROBUST.pth \
#       model.adaptor=work_dirs/recipe_c/selection.json \
#       model.teacher_checkpoint=CLEAN.pth
# At inference on corruptions no gear knows, give the router an estimator
# of the table without the clean gear: model.router.estimator=EST.pth.
_base_ = [
    './gearnn-distill_deeplabv3plus_efficientnet-lite0_1xb8-300_'
    'camvid-240x320.py',
    '../_base_/distortions/corruptions_recipe.py',
]

distortion_space = dict(_delete_=True, **_base_.recipe_gear_space)
model = dict(
    space=dict(_delete_=True, **_base_.recipe_gear_space),
    router=dict(
        type='ConfidentGearRouter',
        threshold=1.0,
        clean_gear=_base_.recipe_clean_gear,
    ),
)
# The distilled gear pipeline: the clean copy kept, then one corruption
# (or the clean gear's identity level) per batch of 8.
train_pipeline = [
    dict(
        _base_.train_pipeline[-2],
        space=_base_.recipe_train_space,
        record_gear=False,
    )
    if step['type'] == 'RandomDistortion'
    else step
    for step in _base_.train_pipeline
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
