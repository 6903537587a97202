"""DistilledGearNNSegmentor and KeepCleanCopy: gears pulled towards the
base's prediction on the clean frame."""

import copy

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from toys import tiny_segmentor

import mmseg_gearnn  # noqa: F401

SPACE = dict(distortions=dict(brightness=[0.3, 0.1]))
SIZE = (32, 32)
META_KEYS = ('img_shape', 'ori_shape', 'pad_shape', 'distortion')


def build(**kwargs):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(
        ConfigDict(
            type='DistilledGearNNSegmentor',
            segmentor=tiny_segmentor(SIZE, num_classes=4, dropout_ratio=0.0),
            space=SPACE,
            adaptor='bn',
            **kwargs,
        )
    )
    model.init_weights()
    return model


def batch(level=0.1, keep_clean=True, n=2):
    init_default_scope('mmseg')
    steps = [dict(type='KeepCleanCopy')] if keep_clean else []
    steps += [
        dict(
            type='FixedDistortion',
            distortion_type='brightness',
            level=level,
            space=SPACE,
        ),
        dict(
            type='PackSegInputs',
            meta_keys=META_KEYS + (('clean_img',) if keep_clean else ()),
        ),
    ]
    pipe = Compose(steps)
    rng = np.random.default_rng(0)
    raws = [
        dict(
            img=rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8),
            gt_seg_map=rng.integers(0, 4, SIZE, dtype=np.uint8),
            seg_fields=['gt_seg_map'],
            img_shape=SIZE,
            ori_shape=SIZE,
        )
        for _ in range(n)
    ]
    return pseudo_collate([pipe(r) for r in raws])


def losses_of(model, data):
    model.train()
    data = model.data_preprocessor(copy.deepcopy(data), True)
    return model.loss(data['inputs'], data['data_samples'])


def test_keep_clean_copy_keeps_the_undistorted_image():
    data = batch()
    for sample, img in zip(data['data_samples'], data['inputs']):
        clean = sample.metainfo['clean_img']
        assert clean.dtype == np.uint8 and clean.shape == (*SIZE, 3)
        # the packed img is the distorted one: darker than its clean copy
        assert img.float().mean() < clean.mean() * 0.5


def test_distillation_term_beside_the_label_loss_reaches_the_gear():
    model = build(distill_weight=2.0)
    losses = losses_of(model, batch())
    assert {'decode.loss_ce', 'loss_distill'} <= set(losses)
    assert losses['loss_distill'].item() > 0
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(
        losses['loss_distill'], params, allow_unused=True
    )
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    # the base never gets a gradient: it is frozen
    assert not any(p.requires_grad for p in model.segmentor.parameters())


def test_the_target_is_the_base_in_inference_mode_on_the_clean_frame():
    model = build()
    data = batch()
    prepared = model.data_preprocessor(copy.deepcopy(data), True)
    model.train()
    target = model.clean_logits(prepared['inputs'], prepared['data_samples'])
    # modes are restored after the target pass
    assert model.training and model.segmentor.decode_head.conv_seg.training
    model.eval()
    clean = clean_inputs(model, data)
    with torch.no_grad():
        expected = model.segmentor.decode_head.forward(
            model.segmentor.extract_feat(clean)
        )
    torch.testing.assert_close(target, expected)


def test_weight_zero_is_plain_gearnn_and_bad_settings_are_named():
    model = build(distill_weight=0.0)
    assert 'loss_distill' not in losses_of(model, batch(keep_clean=False))
    with pytest.raises(KeyError, match='KeepCleanCopy'):
        losses_of(build(), batch(keep_clean=False))
    with pytest.raises(ValueError, match='distill_weight'):
        build(distill_weight=-1.0)
    with pytest.raises(ValueError, match='temperature'):
        build(temperature=0.0)


def clean_inputs(model, data):
    """The clean copies of ``data`` prepared as the model prepares inputs."""
    return model.data_preprocessor(
        dict(
            inputs=[
                torch.from_numpy(s.metainfo['clean_img'].transpose(2, 0, 1))
                for s in data['data_samples']
            ],
            data_samples=copy.deepcopy(data['data_samples']),
        ),
        False,
    )['inputs']


def saved_teacher(path, num_classes=4, prefix=''):
    """A plain segmentor of other weights than the base, saved to ``path``
    (its keys under ``prefix``, as a stability wrapper saves them)."""
    init_default_scope('mmseg')
    torch.manual_seed(1)
    teacher = MODELS.build(
        ConfigDict(
            tiny_segmentor(SIZE, num_classes=num_classes, dropout_ratio=0.0)
        )
    )
    teacher.init_weights()
    state = {prefix + k: v for k, v in teacher.state_dict().items()}
    torch.save(dict(state_dict=state, meta={}), path)
    return teacher.eval()


@pytest.mark.parametrize('prefix', ['', 'segmentor.'])
def test_a_teacher_gives_the_target_in_place_of_the_base(tmp_path, prefix):
    path = str(tmp_path / 'teacher.pth')
    teacher = saved_teacher(path, prefix=prefix)
    model = build(teacher_checkpoint=path)
    data = batch()
    prepared = model.data_preprocessor(copy.deepcopy(data), True)
    model.train()
    target = model.clean_logits(prepared['inputs'], prepared['data_samples'])
    clean = clean_inputs(model, data)
    with torch.no_grad():
        expected = teacher.decode_head.forward(teacher.extract_feat(clean))
        model.eval()
        base = model.segmentor.decode_head.forward(
            model.segmentor.extract_feat(clean)
        )
    torch.testing.assert_close(target, expected)
    assert not torch.allclose(target, base)
    # the teacher is no part of the model: its checkpoints stay as they were
    assert set(model.state_dict()) == set(build().state_dict())
    assert 'loss_distill' in losses_of(model, data)


def test_a_teacher_of_another_model_or_no_file_is_named(tmp_path):
    missing = str(tmp_path / 'none.pth')
    with pytest.raises(FileNotFoundError, match='none.pth'):
        losses_of(build(teacher_checkpoint=missing), batch())
    other = str(tmp_path / 'other.pth')
    saved_teacher(other, num_classes=7)
    with pytest.raises(ValueError, match='not a checkpoint of this segmentor'):
        losses_of(build(teacher_checkpoint=other), batch())
    # a gear model's checkpoint (its gear bank beside the segmentor)
    gears = str(tmp_path / 'gears.pth')
    torch.save(dict(state_dict=build().state_dict()), gears)
    with pytest.raises(ValueError, match='unexpected'):
        losses_of(build(teacher_checkpoint=gears), batch())
