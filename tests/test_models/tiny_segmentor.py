"""The tiny mmseg segmentor config of the routing tests (not a test module).

Kept out of ``conftest.py`` on purpose: other test folders import their
``conftest`` by name, and a second ``conftest`` module would shadow theirs.
"""

from typing import Tuple


def tiny_segmentor(size: Tuple[int, int], num_classes: int) -> dict:
    """A two-stage ResNetV1c + FCN head ``EncoderDecoder`` config."""
    bn = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=size,
        ),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=8,
            base_channels=8,
            num_stages=2,
            strides=(1, 2),
            dilations=(1, 1),
            out_indices=(1,),
            norm_cfg=bn,
        ),
        decode_head=dict(
            type='FCNHead',
            in_channels=16,
            in_index=0,
            channels=8,
            num_convs=1,
            concat_input=False,
            num_classes=num_classes,
            norm_cfg=bn,
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0),
        ),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'),
    )
