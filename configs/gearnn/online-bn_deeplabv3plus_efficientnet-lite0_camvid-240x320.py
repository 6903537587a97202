# Online BN statistics on CamVid, a label-free test-time adaptation rival of
# GearNN: the clean base model with every BatchNorm layer normalising with
# the statistics of the test batch (8 frames of the sweep, in order), no
# labels and no distortion metadata read. Nothing is trained; test the clean
# base's checkpoint with it:
#   python tools/test.py <this file> BASE.pth
# model.momentum=0.1 keeps a moving estimate along the stream instead;
# model.episodic=True restarts it from the source before every batch.
_base_ = ['./deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-240x320.py']

model = dict(
    _delete_=True,
    type='OnlineBNSegmentor',
    segmentor=_base_.model,
    data_preprocessor=_base_.model.data_preprocessor,
    momentum=None,
    episodic=False,
)
