# TENT (Wang et al., ICLR 2021) on CamVid, a label-free test-time adaptation
# rival of GearNN: before predicting each test batch (8 frames of the sweep,
# in order), one Adam step lowers the mean pixel entropy of the clean base
# model's predictions over its BatchNorm weights and biases, which carry
# along the stream; BN normalises with the batch's statistics. No labels
# and no distortion metadata are read. Nothing is trained; test the clean
# base's checkpoint with it:
#   python tools/test.py <this file> BASE.pth
# Defaults of the authors' code: Adam, lr 1e-3, 1 step, not episodic.
_base_ = ['./deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-240x320.py']

model = dict(
    _delete_=True,
    type='TentSegmentor',
    segmentor=_base_.model,
    data_preprocessor=_base_.model.data_preprocessor,
    optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.999), weight_decay=0),
    steps=1,
    episodic=False,
)
