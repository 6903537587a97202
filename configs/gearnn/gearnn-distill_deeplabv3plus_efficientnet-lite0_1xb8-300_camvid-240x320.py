# GearNN on CamVid with each gear also distilled towards the base's own
# prediction on the clean frame (DistilledGearNNSegmentor): beside the label
# loss, a per-pixel KL term to the frozen base's softmax on the undistorted
# copy, which KeepCleanCopy keeps right before the distortion. Everything
# else is the gear config's. A recipe candidate of benchmarks/camvid.py.
#   python tools/train.py <this file> --cfg-options load_from=BASE.pth \
#       model.adaptor=work_dirs/camvid/selection.json model.distill_weight=1
_base_ = [
    './gearnn_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-240x320.py'
]

model = dict(
    type='DistilledGearNNSegmentor', distill_weight=1.0, temperature=1.0
)

# The gear config's pipeline with the clean copy kept right before the
# distortion, and packed.
train_pipeline = _base_.train_pipeline[:-2] + [
    dict(type='KeepCleanCopy'),
    _base_.train_pipeline[-2],
    dict(type='PackSegInputs', meta_keys=_base_.meta_keys + ('clean_img',)),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
