"""StabilitySegmentor and PairedDistortion: the stability-training
baseline."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.dataset import Compose, pseudo_collate
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS, TRANSFORMS
from mmseg.structures import SegDataSample
from toys import tiny_preprocessor

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.models.segmentors.paired_frames import pixel_kl

SPACE = dict(distortions=dict(brightness=[0.3, 0.1], jpeg=[10]))
SIZE = (32, 32)
META_KEYS = (
    'img_shape',
    'ori_shape',
    'pad_shape',
    'distortion',
    'distorted_img',
    'paired_distortion',
)
CONFIG = (
    Path(__file__).resolve().parents[2]
    / 'configs'
    / 'gearnn'
    / 'stability_deeplabv3plus_r18-tiny_1xb8-1k_procedural-96x128.py'
)


def segmentor_cfg():
    """A tiny ResNet-18 + FCN with an auxiliary head and no dropout (so that
    identical inputs give identical logits in training mode)."""
    bn = dict(type='BN', requires_grad=True)
    head = dict(
        type='FCNHead',
        num_convs=1,
        concat_input=False,
        num_classes=4,
        dropout_ratio=0.0,
        norm_cfg=bn,
        align_corners=False,
    )
    return dict(
        type='EncoderDecoder',
        data_preprocessor=tiny_preprocessor(SIZE),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            base_channels=4,
            stem_channels=4,
            out_indices=(2, 3),
            strides=(1, 2, 2, 1),
            dilations=(1, 1, 1, 2),
            norm_cfg=bn,
        ),
        decode_head=dict(
            head,
            in_channels=32,
            in_index=1,
            channels=8,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0),
        ),
        auxiliary_head=dict(
            head,
            in_channels=16,
            in_index=0,
            channels=4,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4),
        ),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'),
    )


def build(alpha=1.0):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(
        ConfigDict(
            type='StabilitySegmentor', segmentor=segmentor_cfg(), alpha=alpha
        )
    )
    model.init_weights()
    return model


def pipeline(**kwargs):
    init_default_scope('mmseg')
    return Compose(
        [
            dict(type='PairedDistortion', space=SPACE, **kwargs),
            dict(type='PackSegInputs', meta_keys=META_KEYS),
        ]
    )


def raw(seed, size=SIZE):
    rng = np.random.default_rng(seed)
    return dict(
        img=rng.integers(0, 256, (*size, 3), dtype=np.uint8),
        gt_seg_map=rng.integers(0, 4, size, dtype=np.uint8),
        seg_fields=['gt_seg_map'],
        img_shape=size,
        ori_shape=size,
    )


def make_batch(n=2, size=SIZE, **kwargs):
    """A collated batch from the real pipeline (brightness 0.1 by default:
    a strong, deterministic distortion)."""
    kwargs.setdefault('types', ['brightness'])
    pipe = pipeline(**kwargs)
    batch = pseudo_collate([pipe(raw(i, size)) for i in range(n)])
    if kwargs['types'] == ['brightness'] and 'clean_prob' not in kwargs:
        for s in batch['data_samples']:
            assert s.metainfo['paired_distortion']['type'] == 'brightness'
    return batch


def prepared(model, batch):
    return model.data_preprocessor(copy.deepcopy(batch), True)


# -- PairedDistortion ----------------------------------------------------
def test_paired_distortion_keeps_img_and_labels_and_records():
    init_default_scope('mmseg')
    t = TRANSFORMS.build(
        dict(
            type='PairedDistortion',
            space=SPACE,
            types=['brightness'],
            draw_every=1,
        )
    )
    results = raw(0)
    img, seg = results['img'].copy(), results['gt_seg_map'].copy()
    out = t(results)
    np.testing.assert_array_equal(out['img'], img)
    np.testing.assert_array_equal(out['gt_seg_map'], seg)
    assert 'distortion' not in out  # 'distortion' describes img: untouched
    record = out['paired_distortion']
    assert record['type'] == 'brightness' and record['level'] in (0.3, 0.1)
    assert record['gear'] == (1 if record['level'] == 0.3 else 2)
    expected = mmseg_gearnn.distortions.distort(
        img, 'brightness', record['level']
    )
    np.testing.assert_array_equal(out['distorted_img'], expected)
    assert out['distorted_img'].dtype == np.uint8
    assert repr(t).startswith('PairedDistortion(space=DistortionSpace(')
    assert 'clean_prob=0.0' in repr(t)


def test_paired_distortion_clean_copy_is_a_separate_equal_array():
    init_default_scope('mmseg')
    t = TRANSFORMS.build(
        dict(type='PairedDistortion', space=SPACE, clean_prob=1.0)
    )
    out = t(raw(0))
    assert out['paired_distortion'] == dict(type='clean', level=None, gear=0)
    np.testing.assert_array_equal(out['distorted_img'], out['img'])
    assert out['distorted_img'] is not out['img']
    with pytest.raises(ValueError, match='clean_prob'):
        TRANSFORMS.build(
            dict(type='PairedDistortion', space=SPACE, clean_prob=2)
        )


# -- the stability term --------------------------------------------------
def test_pixel_kl_masks_and_never_nans():
    p = torch.randn(2, 4, 3, 3)
    q = torch.randn(2, 4, 3, 3, requires_grad=True)
    valid = torch.zeros(2, 3, 3, dtype=torch.bool)
    valid[0, 1, 1] = True
    expected = torch.nn.functional.kl_div(
        q[0, :, 1, 1].log_softmax(0),
        p[0, :, 1, 1].log_softmax(0),
        log_target=True,
        reduction='sum',
    )
    torch.testing.assert_close(pixel_kl(p, q, valid), expected)
    none = pixel_kl(p, q, torch.zeros_like(valid))
    none.backward()
    assert none.item() == 0 and torch.isfinite(q.grad).all()


def test_zero_when_the_copy_equals_the_clean_input():
    model = build().train()
    data = prepared(model, make_batch(clean_prob=1.0))
    losses = model(**data, mode='loss')
    assert losses['loss_stability'].item() == 0.0
    assert losses['decode.loss_ce'] > 0 and 'aux.loss_ce' in losses


def test_positive_and_gradient_reaches_the_segmentor():
    model = build().train()
    losses = model(**prepared(model, make_batch()), mode='loss')
    term = losses['loss_stability']
    assert term.item() > 0
    term.backward()
    grads = [p.grad for p in model.segmentor.backbone.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def flat(grads, params):
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).flatten()
            for g, p in zip(grads, params)
        ]
    )


def test_clean_prediction_is_a_detached_target():
    """The stability gradient equals the one through p(x') alone."""
    model = build(alpha=2.0).eval()  # eval: no batch-statistic noise
    data = prepared(model, make_batch())
    term = model(**data, mode='loss')['loss_stability']
    params = [p for p in model.segmentor.parameters() if p.requires_grad]
    got = flat(torch.autograd.grad(term, params, allow_unused=True), params)

    seg = model.segmentor
    distorted = model.distorted_inputs(data['inputs'], data['data_samples'])
    with torch.no_grad():
        target = seg._forward(data['inputs'])
    logits = seg._forward(distorted)
    labels = torch.stack([s.gt_sem_seg.data[0] for s in data['data_samples']])

    def up(x):
        return torch.nn.functional.interpolate(
            x, SIZE, mode='bilinear', align_corners=False
        )

    ref = 2.0 * pixel_kl(up(target), up(logits), labels != 255)
    torch.testing.assert_close(term, ref)
    want = flat(torch.autograd.grad(ref, params, allow_unused=True), params)
    # Without the detach the gradient differs by ~80% of its norm.
    assert want.norm() > 0
    assert (got - want).norm() <= 1e-4 * want.norm()


def test_all_ignored_labels_give_a_finite_zero():
    model = build().train()
    batch = make_batch()
    for s in batch['data_samples']:
        s.gt_sem_seg = PixelData(data=torch.full((1, *SIZE), 255))
    losses = model(**prepared(model, batch), mode='loss')
    term = losses['loss_stability']
    assert term.item() == 0.0
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(
        torch.isfinite(p.grad).all()
        for p in model.parameters()
        if p.grad is not None
    )


def test_bn_running_stats_update_once_per_copy():
    model = build().train()
    model(**prepared(model, make_batch()), mode='loss')
    bn = model.segmentor.backbone.stem[1]
    assert bn.num_batches_tracked.item() == 2  # clean + distorted, no target


def test_padding_and_missing_copy():
    model = build().train()
    # 24x28 images padded to 32x32: both copies padded alike.
    data = prepared(model, make_batch(size=(24, 28), clean_prob=1.0))
    assert data['inputs'].shape[-2:] == SIZE
    assert model(**data, mode='loss')['loss_stability'].item() == 0.0
    batch = make_batch()
    for s in batch['data_samples']:
        s.set_metainfo(dict(distorted_img=None))
    with pytest.raises(KeyError, match='PairedDistortion'):
        model(**prepared(model, batch), mode='loss')


# -- every mode, and the plumbing ----------------------------------------
def test_every_mode_and_steps():
    model = build()
    batch = make_batch()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = copy.deepcopy(model.segmentor.state_dict())
    model.train()
    log = model.train_step(copy.deepcopy(batch), optim)
    assert torch.isfinite(log['loss']) and log['loss_stability'] > 0
    assert not torch.equal(
        model.segmentor.state_dict()['backbone.stem.0.weight'],
        before['backbone.stem.0.weight'],
    )
    # Inference needs no distorted copy and is the wrapped segmentor.
    model.eval()
    plain = dict(
        inputs=batch['inputs'],
        data_samples=[
            SegDataSample(metainfo=dict(img_shape=SIZE, ori_shape=SIZE))
            for _ in batch['inputs']
        ],
    )
    preds = model.val_step(copy.deepcopy(plain))
    assert len(preds) == 2 and preds[0].pred_sem_seg.shape == SIZE
    direct = model.segmentor.predict(
        **model.data_preprocessor(copy.deepcopy(plain), False)
    )
    for a, b in zip(preds, direct):
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)
    assert len(model.test_step(copy.deepcopy(plain))) == 2
    data = model.data_preprocessor(copy.deepcopy(plain), False)
    logits = model(**data, mode='tensor')
    assert logits.shape[:2] == (2, 4)
    assert model.num_classes == 4 and model.out_channels == 4
    assert model.align_corners is False and model.ignore_index == 255
    assert model.decode_head is model.segmentor.decode_head
    assert model.with_auxiliary_head and not model.with_neck


def test_alpha_scales_and_is_validated():
    data = prepared(build(), make_batch())
    one = build(alpha=1.0).train()(**copy.deepcopy(data), mode='loss')
    half = build(alpha=0.5).train()(**copy.deepcopy(data), mode='loss')
    torch.testing.assert_close(
        half['loss_stability'], 0.5 * one['loss_stability']
    )
    with pytest.raises(ValueError, match='alpha'):
        build(alpha=-1)


def test_loads_a_bare_segmentor_checkpoint():
    model = build()
    init_default_scope('mmseg')
    torch.manual_seed(1)
    bare = MODELS.build(ConfigDict(segmentor_cfg()))
    model.load_state_dict(bare.state_dict())
    for k, v in bare.state_dict().items():
        assert torch.equal(model.segmentor.state_dict()[k], v), k


def test_config_trains_on_paired_data():
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.model.type == 'StabilitySegmentor'
    assert 'distorted_img' in cfg.train_pipeline[-1]['meta_keys']
    init_default_scope('mmseg')
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset_cfg.num_samples = 2
    from mmseg.registry import DATASETS

    dataset = DATASETS.build(dataset_cfg)
    batch = pseudo_collate([dataset[0], dataset[1]])
    sample = batch['data_samples'][0]
    assert sample.metainfo['distorted_img'].shape == (96, 128, 3)
    assert sample.metainfo['paired_distortion']['gear'] > 0
    cfg.model.segmentor.backbone.base_channels = 4  # keep the test fast
    cfg.model.segmentor.backbone.stem_channels = 4
    cfg.model.segmentor.decode_head.update(
        in_channels=32, c1_in_channels=4, channels=8, c1_channels=4
    )
    model = MODELS.build(cfg.model)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    log = model.train().train_step(batch, optim)
    assert torch.isfinite(log['loss']) and log['loss_stability'] > 0
