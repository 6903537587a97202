import copy
import json

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from toys import tiny_preprocessor, write_selection

import mmseg_gearnn  # noqa: F401

SPACE = dict(distortions=dict(jpeg=[40, 10], brightness=[0.3]))
SIZE = (32, 32)
BN = dict(type='BN', requires_grad=True)
PREPROCESSOR = tiny_preprocessor(SIZE)


def _head(head_type, in_channels, in_index, **kwargs):
    head = dict(
        type=head_type,
        in_channels=in_channels,
        in_index=in_index,
        num_classes=4,
        norm_cfg=BN,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0),
    )
    head.update(kwargs)
    return head


# Three families: a dilated ResNet with DeepLabV3, a SegFormer MiT (LN, no
# BN in the backbone), and the real-time BiSeNetV2 with auxiliary heads.
SEGMENTORS = {
    'deeplabv3_r18': dict(
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            base_channels=8,
            stem_channels=8,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            norm_cfg=BN,
            contract_dilation=True,
        ),
        decode_head=_head(
            'ASPPHead', 64, 3, channels=16, dilations=(1, 2, 3, 4)
        ),
        auxiliary_head=_head(
            'FCNHead',
            32,
            2,
            channels=8,
            num_convs=1,
            concat_input=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4),
        ),
    ),
    'segformer_mit': dict(
        backbone=dict(
            type='MixVisionTransformer',
            in_channels=3,
            embed_dims=8,
            num_stages=4,
            num_layers=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            patch_sizes=[7, 3, 3, 3],
            sr_ratios=[8, 4, 2, 1],
            out_indices=(0, 1, 2, 3),
            mlp_ratio=2,
        ),
        decode_head=_head(
            'SegformerHead', [8, 16, 32, 64], [0, 1, 2, 3], channels=16
        ),
    ),
    'bisenetv2': dict(
        backbone=dict(
            type='BiSeNetV2',
            detail_channels=(8, 8, 16),
            semantic_channels=(4, 8, 16, 16),
            semantic_expansion_ratio=2,
            bga_channels=16,
            out_indices=(0, 1, 2, 3, 4),
            norm_cfg=BN,
        ),
        decode_head=_head(
            'FCNHead', 16, 0, channels=16, num_convs=1, concat_input=False
        ),
    ),
}


def segmentor_cfg(name):
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=PREPROCESSOR,
        train_cfg=dict(),
        test_cfg=dict(mode='whole'),
    )
    cfg.update(copy.deepcopy(SEGMENTORS[name]))
    if name == 'segformer_mit':
        # The MiT stages have 8, 16, 32, 64 channels with embed_dims=8.
        cfg['backbone']['num_heads'] = [1, 2, 4, 8]
    return cfg


def build(name='deeplabv3_r18', adaptor='bn', **kwargs):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(
        ConfigDict(
            type='GearNNSegmentor',
            segmentor=segmentor_cfg(name),
            space=SPACE,
            adaptor=adaptor,
            **kwargs,
        )
    )
    model.init_weights()
    return model


def make_batch(gears, space=None, seed=0):
    from mmseg_gearnn.distortions import build_space

    space = build_space(space or SPACE)
    g = torch.Generator().manual_seed(seed)
    samples = []
    for gear in gears:
        meta = dict(img_shape=SIZE, ori_shape=SIZE, pad_shape=SIZE)
        if gear is not None:
            dtype, level = space.level_of(gear)
            meta['distortion'] = dict(type=dtype, level=level, gear=gear)
        sample = SegDataSample(metainfo=meta)
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 4, (1, *SIZE), generator=g)
        )
        samples.append(sample)
    inputs = [
        torch.randint(0, 256, (3, *SIZE), generator=g, dtype=torch.uint8)
        for _ in gears
    ]
    return dict(inputs=inputs, data_samples=samples)


def train_steps(model, batch, steps=2):
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5))
    model.train()
    for _ in range(steps):
        log = model.train_step(copy.deepcopy(batch), optim)
    return log


@pytest.mark.parametrize('name', sorted(SEGMENTORS))
def test_every_mode(name):
    model = build(name)
    batch = make_batch([0, 1, 3, 1])
    log = train_steps(model, batch, steps=1)
    assert torch.isfinite(log['loss'])
    model.eval()
    preds = model.val_step(copy.deepcopy(batch))
    assert len(preds) == 4
    assert preds[0].pred_sem_seg.data.shape == (1, *SIZE)
    preds = model.test_step(copy.deepcopy(batch))
    assert len(preds) == 4
    data = model.data_preprocessor(copy.deepcopy(batch), False)
    logits = model(**data, mode='tensor')
    assert logits.shape[0] == 4 and logits.shape[1] == 4
    losses = model(
        **model.data_preprocessor(copy.deepcopy(batch), True), mode='loss'
    )
    assert any('loss' in k for k in losses)
    # What mmseg tools read from a segmentor.
    assert model.num_classes == 4 and model.out_channels == 4
    assert model.align_corners is False
    assert model.decode_head is model.segmentor.decode_head


@pytest.mark.parametrize('name', ['deeplabv3_r18', 'bisenetv2'])
def test_base_bit_identical_and_only_present_gears_learn(name):
    model = build(name)
    base = copy.deepcopy(model.segmentor.state_dict())
    bank = {k: v.clone() for k, v in model.gear_bank.state_dict().items()}
    train_steps(model, make_batch([1, 1, 3, 3]), steps=2)
    for key, value in model.segmentor.state_dict().items():
        assert torch.equal(value, base[key]), f'base tensor {key} changed'
    changed_gears = {
        int(k.split('.')[1])
        for k, v in model.gear_bank.state_dict().items()
        if not torch.equal(v, bank[k])
    }
    assert changed_gears == {1, 3}
    model.check_base_frozen()


def test_base_requires_no_grad_and_bn_modes():
    model = build()
    assert not any(p.requires_grad for p in model.segmentor.parameters())
    assert all(p.requires_grad for p in model.gear_bank.parameters())
    model.train()
    from torch.nn.modules.batchnorm import _BatchNorm

    bns = {
        name: m
        for name, m in model.segmentor.named_modules()
        if isinstance(m, _BatchNorm)
    }
    # With the 'bn' adaptor every BN layer's statistics are adapted but
    # the auxiliary head's (unused at inference: no adaptor candidate).
    aux = [n for n in bns if n.startswith('auxiliary_head.')]
    assert aux and not any(bns[n].training for n in aux)
    assert all(m.training for n, m in bns.items() if n not in aux)
    head_only = build(adaptor=['decode_head.conv_seg.weight'])
    head_only.train()
    assert not any(
        m.training
        for m in head_only.segmentor.modules()
        if isinstance(m, _BatchNorm)
    )
    for p in head_only.segmentor.parameters():
        p.requires_grad_(True)
    with pytest.raises(RuntimeError, match='must stay frozen'):
        head_only.check_base_frozen()


def test_clean_only_batch_is_a_no_op():
    model = build()
    bank = {k: v.clone() for k, v in model.gear_bank.state_dict().items()}
    base = copy.deepcopy(model.segmentor.state_dict())
    train_steps(model, make_batch([0, 0]), steps=1)
    for k, v in model.gear_bank.state_dict().items():
        assert torch.equal(v, bank[k])
    for k, v in model.segmentor.state_dict().items():
        assert torch.equal(v, base[k])


@pytest.mark.parametrize('name', sorted(SEGMENTORS))
def test_mixed_batch_matches_samples_alone(name):
    model = build(name)
    train_steps(model, make_batch([1, 2, 3], seed=1), steps=2)
    model.eval()
    batch = make_batch([2, 0, 1, 3, 1, None])
    together = model.test_step(copy.deepcopy(batch))
    for i in range(6):
        alone = model.test_step(
            dict(
                inputs=[batch['inputs'][i]],
                data_samples=[copy.deepcopy(batch['data_samples'][i])],
            )
        )[0]
        torch.testing.assert_close(
            together[i].seg_logits.data,
            alone.seg_logits.data,
            atol=1e-5,
            rtol=1e-5,
        )
        assert torch.equal(
            together[i].pred_sem_seg.data, alone.pred_sem_seg.data
        )


def test_gears_give_different_predictions_and_default_gear():
    model = build(default_gear=2)
    train_steps(model, make_batch([1, 2, 3], seed=1), steps=3)
    model.eval()
    batch = make_batch([None])
    batch['data_samples'][0].set_metainfo(
        dict(distortion=dict(type='jpeg', level=10, gear=2))
    )
    routed = model.test_step(copy.deepcopy(batch))[0].seg_logits.data
    no_meta = make_batch([None])
    no_meta['inputs'] = batch['inputs']
    default = model.test_step(no_meta)[0].seg_logits.data
    assert torch.equal(routed, default)
    batch['data_samples'][0].set_metainfo(
        dict(distortion=dict(type='clean', level=None, gear=0))
    )
    clean = model.test_step(copy.deepcopy(batch))[0].seg_logits.data
    assert not torch.allclose(clean, routed)


@pytest.mark.faults
def test_routing_errors():
    model = build()
    model.eval()
    batch = make_batch([None])
    batch['data_samples'][0].set_metainfo(
        dict(distortion=dict(type='jpeg', level=40, gear=3))
    )
    with pytest.raises(ValueError, match='disagrees with the gear table'):
        model.test_step(copy.deepcopy(batch))
    batch['data_samples'][0].set_metainfo(
        dict(distortion=dict(type='jpeg', level=33, gear=None))
    )
    with pytest.raises(ValueError, match=r'valid levels: \[40, 10\]'):
        model.test_step(copy.deepcopy(batch))
    batch['data_samples'][0].set_metainfo(dict(distortion=dict(gear=9)))
    with pytest.raises(ValueError, match=r'valid gears are 0\.\.3'):
        model.test_step(copy.deepcopy(batch))
    with pytest.raises(ValueError, match='outside the gear table'):
        build(default_gear=4)


@pytest.mark.faults
def test_adaptor_sources_and_errors(tmp_path):
    names = ['decode_head.conv_seg.weight', 'backbone.stem.1.running_mean']
    model = build(adaptor=names)
    # A BN layer's statistics travel together.
    assert set(model.adaptor_names) == set(names) | {
        'backbone.stem.1.running_var',
        'backbone.stem.1.num_batches_tracked',
    }
    # Every tensor but the auxiliary head's (unused at inference).
    assert build(adaptor='all').adaptor_fraction() > 0.98
    assert 0 < build(adaptor='bn').adaptor_fraction() < 0.2
    with pytest.raises(KeyError, match='not in the model'):
        build(adaptor=['backbone.nope.weight'])
    with pytest.raises(ValueError, match="unknown adaptor 'everything'"):
        build(adaptor='everything')
    with pytest.raises(FileNotFoundError, match='selection file not found'):
        build(adaptor=str(tmp_path / 'missing.json'))
    base = model.segmentor
    other = write_selection(
        tmp_path / 'other_space.json',
        names,
        dict(distortions=dict(jpeg=[40])),
        base,
    )
    with pytest.raises(ValueError, match='another distortion space'):
        build(adaptor=other)
    good = write_selection(tmp_path / 'selection.json', names, SPACE, base)
    assert build(adaptor=good).selection_meta['method'] == 'fisher'
    # The selection module's reader: the format version is checked.
    old = tmp_path / 'old.json'
    old.write_text(json.dumps(dict(selected=names, distortion_space=SPACE)))
    with pytest.raises(ValueError, match='is not a selection file'):
        build(adaptor=str(old))


def _logits(model, batch):
    model.eval()
    return [s.seg_logits.data for s in model.test_step(copy.deepcopy(batch))]


def test_save_load_full_checkpoint_and_gears_file(tmp_path):
    model = build()
    train_steps(model, make_batch([1, 2, 3, 3], seed=2), steps=2)
    batch = make_batch([0, 1, 2, 3])
    expected = _logits(model, batch)

    full = build()
    full.load_state_dict(model.state_dict())
    for a, b in zip(expected, _logits(full, batch)):
        assert torch.equal(a, b)

    gears_file = str(tmp_path / 'gears.pth')
    model.save_gears(gears_file)
    base_only = build()
    # A bare segmentor checkpoint (load_from a base): keys move under
    # 'segmentor.' and every gear starts from the base.
    base_only.load_state_dict(model.segmentor.state_dict())
    for gear in (1, 2, 3):
        for name, tensor in base_only.gear_bank.tensors(gear).items():
            assert torch.equal(tensor, model.segmentor.state_dict()[name])
    base_only.load_gears(gears_file)
    for a, b in zip(expected, _logits(base_only, batch)):
        assert torch.equal(a, b)

    # A stability-trained model's checkpoint (its segmentor under
    # 'segmentor.', nothing else) is a base as well: it was refused with
    # every gear tensor missing.
    stability = MODELS.build(
        dict(
            type='StabilitySegmentor', segmentor=segmentor_cfg('deeplabv3_r18')
        )
    )
    stability.segmentor.load_state_dict(model.segmentor.state_dict())
    over_stability = build()
    over_stability.load_state_dict(stability.state_dict())
    for gear in (1, 2, 3):
        for name, tensor in over_stability.gear_bank.tensors(gear).items():
            assert torch.equal(tensor, model.segmentor.state_dict()[name])

    import os

    adaptor = model.gear_bank.adaptor_bytes()
    # n_gears x adaptor, plus a small header (names and shapes).
    assert (
        3 * adaptor < os.path.getsize(gears_file) < 3 * adaptor * 1.2 + 12000
    )


@pytest.mark.faults
def test_gears_file_for_another_model_is_refused(tmp_path):
    model = build()
    gears_file = str(tmp_path / 'gears.pth')
    model.save_gears(gears_file)
    other_selection = build(adaptor=['decode_head.conv_seg.weight'])
    with pytest.raises(ValueError) as err:
        other_selection.load_gears(gears_file)
    message = str(err.value)
    assert 'does not match this model' in message
    assert 'backbone.stem.1.weight: not in this model' in message
    other_arch = build('bisenetv2')
    with pytest.raises(ValueError, match='does not match this model'):
        other_arch.load_gears(gears_file)
    with pytest.raises(FileNotFoundError, match='gears file not found'):
        model.load_gears(str(tmp_path / 'none.pth'))
    (tmp_path / 'bad.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='cannot read gears file'):
        model.load_gears(str(tmp_path / 'bad.pth'))


@pytest.mark.faults
def test_mismatching_base_checkpoint_is_refused():
    model = build()
    state = model.segmentor.state_dict()
    state.pop('backbone.stem.0.weight')
    with pytest.raises(RuntimeError, match='does not match this'):
        model.load_state_dict(state, strict=False)


def test_inference_switching_never_leaks_into_the_base():
    model = build()
    train_steps(model, make_batch([1, 2, 3], seed=1), steps=2)
    base = copy.deepcopy(model.segmentor.state_dict())
    model.eval()
    batch = make_batch([2, 1, 3])
    model.test_step(copy.deepcopy(batch))
    assert model.gear_bank.active != 0  # a gear is switched in
    # What anyone reads of the model is still the base.
    state = model.state_dict()
    for key, value in base.items():
        assert torch.equal(state[f'segmentor.{key}'], value), key
    model.test_step(copy.deepcopy(batch))
    model.train()
    for key, value in model.segmentor.state_dict().items():
        assert torch.equal(value, base[key]), key
    # Switching is exact: same predictions as a fresh copy run per gear.
    model.eval()
    first = [s.seg_logits.data for s in model.test_step(copy.deepcopy(batch))]
    again = [s.seg_logits.data for s in model.test_step(copy.deepcopy(batch))]
    for a, b in zip(first, again):
        assert torch.equal(a, b)


@pytest.mark.faults
def test_gears_file_for_another_space_is_refused(tmp_path):
    model = build()
    gears_file = str(tmp_path / 'gears.pth')
    model.save_gears(gears_file)
    # As many gears, other levels: the gears would be silently misrouted.
    init_default_scope('mmseg')
    other = MODELS.build(
        ConfigDict(
            type='GearNNSegmentor',
            segmentor=segmentor_cfg('deeplabv3_r18'),
            space=dict(distortions=dict(jpeg=[30, 10], brightness=[0.3])),
        )
    )
    with pytest.raises(ValueError) as err:
        other.load_gears(gears_file)
    assert 'does not match this model' in str(err.value)
    assert 'lacks 1 gear(s) of this model (jpeg@30)' in str(err.value)
    assert '1:jpeg@40 2:jpeg@10' in str(err.value)
    # Fewer gears: those of the model are loaded, by (type, level).
    fewer = MODELS.build(
        ConfigDict(
            type='GearNNSegmentor',
            segmentor=segmentor_cfg('deeplabv3_r18'),
            space=dict(distortions=dict(jpeg=[10])),
        )
    )
    fewer.load_gears(gears_file, allow_other_base=True)
    for a, b in zip(
        fewer.gear_bank.tensors(1).values(),
        model.gear_bank.tensors(2).values(),
    ):
        assert torch.equal(a, b)


@pytest.mark.faults
def test_interrupted_gears_write_leaves_the_old_file(tmp_path, monkeypatch):
    model = build()
    gears_file = tmp_path / 'gears.pth'
    model.save_gears(str(gears_file))
    before = gears_file.read_bytes()
    train_steps(model, make_batch([1, 2, 3], seed=1), steps=1)

    real_save = torch.save

    def save_half_then_die(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # half of it written, then killed
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        model.save_gears(str(gears_file))
    monkeypatch.undo()
    # The old file, whole, and nothing half-written beside it.
    assert gears_file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['gears.pth']
    build().load_gears(str(gears_file))
