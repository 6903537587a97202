"""ClassWeightedCrossEntropyLoss: per-class weights with ignored pixels."""

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.models.losses import CrossEntropyLoss
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from toys import tiny_segmentor

import mmseg_gearnn  # noqa: F401

IGNORE = 255


def build(**kwargs):
    return MODELS.build(dict(type='ClassWeightedCrossEntropyLoss', **kwargs))


def logits_and_labels(num_classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, num_classes, 4, 5, generator=gen)
    labels = torch.randint(0, num_classes, (2, 4, 5), generator=gen)
    labels[0, 0] = IGNORE
    labels[1, :, 2] = IGNORE
    return logits.requires_grad_(), labels


def test_weighted_mean_over_labelled_pixels():
    logits, labels = logits_and_labels()
    weights = [0.5, 2.0, 4.0]
    loss = build(class_weight=weights, loss_weight=0.7)(
        logits, labels, ignore_index=IGNORE
    )
    valid = labels != IGNORE
    ce = F.cross_entropy(logits, labels.clamp(max=2), reduction='none')
    w = torch.tensor(weights)[labels.clamp(max=2)]
    expected = 0.7 * (w * ce)[valid].sum() / w[valid].sum()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad[0, :, 0].abs().sum() == 0  # ignored pixels


def test_unit_weights_match_mmseg_mean_over_labelled_pixels():
    logits, labels = logits_and_labels()
    ours = build(class_weight=[1.0, 1.0, 1.0])(
        logits, labels, ignore_index=IGNORE
    )
    mmseg_loss = CrossEntropyLoss(avg_non_ignore=True)(
        logits, labels, ignore_index=IGNORE
    )
    torch.testing.assert_close(ours, mmseg_loss)


def test_weights_move_the_loss_toward_heavy_classes():
    logits, labels = logits_and_labels()
    light = build(class_weight=[1.0, 1.0, 1.0])(logits, labels)
    per_class = [
        F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction='none')[
            labels == c
        ].mean()
        for c in range(3)
    ]
    heavy = max(range(3), key=lambda c: per_class[c].item())
    weights = [1.0, 1.0, 1.0]
    weights[heavy] = 10.0
    assert build(class_weight=weights)(logits, labels) > light


def test_all_ignored_is_a_finite_zero_with_a_gradient_path():
    logits, labels = logits_and_labels()
    loss = build(class_weight=[1.0, 2.0, 3.0])(
        logits, torch.full_like(labels, IGNORE)
    )
    assert loss.item() == 0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(class_weight=[]), 'empty'),
        (dict(class_weight=[1.0, -1.0]), 'non-negative'),
        (dict(class_weight=[1.0, float('nan')]), 'non-negative'),
        (dict(class_weight=[0.0, 0.0]), 'all zeros'),
        (dict(class_weight=[1.0], loss_name='ce'), 'loss_'),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


def test_weight_count_must_match_the_head():
    logits, labels = logits_and_labels(num_classes=3)
    with pytest.raises(ValueError, match='2 entries but the head predicts 3'):
        build(class_weight=[1.0, 1.0])(logits, labels)


def test_a_segmentor_trains_with_it_on_labels_holding_ignore_index():
    init_default_scope('mmseg')
    cfg = tiny_segmentor((16, 16), num_classes=3)
    cfg['decode_head']['loss_decode'] = dict(
        type='ClassWeightedCrossEntropyLoss',
        class_weight=[0.2, 1.0, 5.0],
        loss_name='loss_wce',
    )
    model = MODELS.build(cfg)
    labels = torch.randint(0, 3, (1, 16, 16))
    labels[..., :4] = IGNORE
    sample = SegDataSample(gt_sem_seg=PixelData(data=labels))
    sample.set_metainfo(dict(img_shape=(16, 16), pad_shape=(16, 16)))
    losses = model.loss(torch.randn(1, 3, 16, 16), [sample])
    assert set(losses) == {'decode.loss_wce', 'decode.acc_seg'}
    losses['decode.loss_wce'].backward()
    assert torch.isfinite(losses['decode.loss_wce'])
    # The weights are a loss setting, not model bytes or checkpoint state.
    loss = model.decode_head.loss_decode
    assert not list(loss.buffers()) and not loss.state_dict()
