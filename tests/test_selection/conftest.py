import copy

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from toys import tiny_preprocessor

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.distortions import build_space, distort
from mmseg_gearnn.selection import BatchSource

NUM_CLASSES = 3
IMG = 32
SPACE = dict(distortions=dict(brightness=[0.5, 0.2], gaussian_noise=[40]))

NORM_CFG = dict(type='BN', requires_grad=True)
TINY_MODEL = dict(
    type='EncoderDecoder',
    data_preprocessor=tiny_preprocessor((IMG, IMG)),
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        stem_channels=8,
        base_channels=4,
        num_stages=4,
        out_indices=(3,),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=NORM_CFG,
        contract_dilation=True,
    ),
    decode_head=dict(
        type='FCNHead',
        in_channels=32,
        channels=8,
        num_convs=1,
        concat_input=False,
        in_index=0,
        num_classes=NUM_CLASSES,
        norm_cfg=NORM_CFG,
        dropout_ratio=0.1,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0
        ),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
)


def trained_like(model):
    """Make a fresh model look trained: no tensor exactly zero (fresh
    biases are), running statistics other than the initial 0 / 1."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.1)
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.normal_(0, 0.5)
            elif name.endswith('running_var'):
                b.uniform_(0.5, 2.0)
    return model


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmseg')


@pytest.fixture(scope='session')
def _built_model():
    # Tiny models gain nothing from threads; on a shared machine they lose.
    torch.set_num_threads(1)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(TINY_MODEL))
    return trained_like(model)


@pytest.fixture
def tiny_model(_built_model):
    """A fresh copy of a tiny ResNetV1c-18 + FCN EncoderDecoder."""
    return copy.deepcopy(_built_model)


@pytest.fixture
def space():
    return build_space(SPACE)


class InMemorySource(BatchSource):
    """Fixed clean images distorted per level; records what was asked."""

    def __init__(self, space, batch_size=2, num_images=4, seed=0):
        self.space = build_space(space)
        rng = np.random.default_rng(seed)
        # Images whose label is where they are bright: the loss can learn.
        self.images, self.labels = [], []
        for _ in range(num_images):
            label = rng.integers(0, NUM_CLASSES, (IMG // 8, IMG // 8))
            label = np.kron(label, np.ones((8, 8), dtype=np.int64))
            img = label[..., None] * 80 + rng.integers(0, 60, (IMG, IMG, 3))
            self.images.append(img.astype(np.uint8))
            self.labels.append(label)
        self.batch_size = batch_size
        self.requests = []

    def level_batches(self, distortion_type, level):
        self.requests.append((distortion_type, level))
        rng = np.random.default_rng(0)
        i = 0
        while True:
            inputs, samples = [], []
            for _ in range(self.batch_size):
                k = i % len(self.images)
                i += 1
                img = distort(self.images[k], distortion_type, level, rng)
                inputs.append(torch.from_numpy(img).permute(2, 0, 1).clone())
                sample = SegDataSample()
                sample.gt_sem_seg = PixelData(
                    data=torch.from_numpy(self.labels[k])[None]
                )
                sample.set_metainfo(
                    dict(
                        img_shape=(IMG, IMG),
                        ori_shape=(IMG, IMG),
                        pad_shape=(IMG, IMG),
                        distortion=self.space.record(distortion_type, level),
                    )
                )
                samples.append(sample)
            yield dict(inputs=inputs, data_samples=samples)


@pytest.fixture
def source(space):
    return InMemorySource(space)


@pytest.fixture
def make_source():
    """Factory of :class:`InMemorySource` (``make_source(space, ...)``)."""
    return InMemorySource


@pytest.fixture
def tiny_model_cfg():
    """A copy of the tiny model config."""
    return copy.deepcopy(TINY_MODEL)


@pytest.fixture
def make_trained_like():
    """:func:`trained_like`, for models built in a test."""
    return trained_like
