"""OnlineBNSegmentor and TentSegmentor: label-free test-time adaptation."""

import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch.nn.modules.batchnorm import _BatchNorm
from toys import tiny_segmentor

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.models.tta import mean_pixel_entropy
from mmseg_gearnn.models.tta.base import batch_statistics

SIZE = (24, 32)
SEGMENTOR = tiny_segmentor(SIZE, num_classes=4)
CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'gearnn'
CAMVID_CONFIGS = dict(
    OnlineBNSegmentor='online-bn_deeplabv3plus_efficientnet-lite0_camvid-'
    '240x320.py',
    TentSegmentor='tent_deeplabv3plus_efficientnet-lite0_camvid-240x320.py',
)


def build(kind: str, segmentor: dict = SEGMENTOR, **kwargs):
    """The wrapper around the tiny segmentor, with source statistics unlike
    those of the test batches."""
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(
        dict(type=kind, segmentor=copy.deepcopy(segmentor), **kwargs)
    ).eval()
    with torch.no_grad():
        for m in bn_layers(model):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def bn_layers(model):
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def batch(seed: int, n: int = 4) -> torch.Tensor:
    """A test batch shifted away from the source statistics."""
    g = torch.Generator().manual_seed(seed)
    return 1.5 + 2.0 * torch.randn(n, 3, *SIZE, generator=g)


def state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model, expected: dict) -> None:
    actual = model.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def recorded_bn_io(model):
    """Each BN layer's input and output of the next forward pass."""
    records = {}

    def record(module, args, output):
        records[module] = (args[0].detach().clone(), output.detach().clone())

    handles = [m.register_forward_hook(record) for m in bn_layers(model)]
    return records, handles


def normalised(x, mean, var, m):
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + m.eps) * (
        m.weight.view(shape)
    ) + m.bias.view(shape)


def per_channel(x):
    dims = [0] + list(range(2, x.dim()))
    return x.mean(dims), x.var(dims, unbiased=False), x.var(dims)


# -- online BN statistics -------------------------------------------------
def test_online_bn_batch_statistics_equal_manual():
    model = build('OnlineBNSegmentor')
    source = state(model)
    records, handles = recorded_bn_io(model)
    with torch.no_grad():
        model.predict(batch(1))
    for h in handles:
        h.remove()
    assert len(records) == len(bn_layers(model)) > 0
    for m, (x, out) in records.items():
        mean, biased_var, _ = per_channel(x)
        torch.testing.assert_close(out, normalised(x, mean, biased_var, m))
    # The running statistics stay the source's.
    assert_same_state(model, source)


def test_online_bn_moving_statistics_move_toward_the_batch():
    momentum = 0.3
    model = build('OnlineBNSegmentor', momentum=momentum)
    source = {
        m: (m.running_mean.clone(), m.running_var.clone())
        for m in bn_layers(model)
    }
    records, handles = recorded_bn_io(model)
    with torch.no_grad():
        model.predict(batch(1))
    for h in handles:
        h.remove()
    for m, (x, out) in records.items():
        mean, _, unbiased_var = per_channel(x)
        src_mean, src_var = source[m]
        expected_mean = (1 - momentum) * src_mean + momentum * mean
        expected_var = (1 - momentum) * src_var + momentum * unbiased_var
        torch.testing.assert_close(m.running_mean, expected_mean)
        torch.testing.assert_close(m.running_var, expected_var)
        assert int(m.num_batches_tracked) == 1
        # Normalised with the updated statistics, in one pass.
        torch.testing.assert_close(
            out, normalised(x, expected_mean, expected_var, m)
        )
        assert (m.running_mean - mean).norm() < (src_mean - mean).norm()


def test_online_bn_reset_restores_exactly():
    model = build('OnlineBNSegmentor', momentum=0.5)
    source = state(model)
    with torch.no_grad():
        model.predict(batch(1))
        model.predict(batch(2))
    assert not torch.equal(
        model.state_dict()['segmentor.backbone.stem.1.running_mean'],
        source['segmentor.backbone.stem.1.running_mean'],
    )
    model.reset()
    assert_same_state(model, source)


@pytest.mark.parametrize('episodic', [True, False])
def test_online_bn_episodic_starts_each_batch_from_the_source(episodic):
    model = build('OnlineBNSegmentor', momentum=0.5, episodic=episodic)
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        model.predict(batch(1))
        second = model.predict(batch(2))
        alone = fresh.predict(batch(2))
    same_logits = torch.equal(
        second[0].seg_logits.data, alone[0].seg_logits.data
    )
    same_stats = all(
        torch.equal(a.running_mean, b.running_mean)
        for a, b in zip(bn_layers(model), bn_layers(fresh))
    )
    assert same_logits == same_stats == episodic


# -- TENT -----------------------------------------------------------------
def entropy(model, inputs) -> float:
    with torch.no_grad(), batch_statistics(model.bn_layers):
        return float(
            mean_pixel_entropy(model.encode_decode(inputs, metas(inputs)))
        )


def metas(inputs):
    shape = tuple(inputs.shape[2:])
    return [dict(img_shape=shape, ori_shape=shape, pad_shape=shape)] * len(
        inputs
    )


def affine_names(model):
    names = set()
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm):
            names |= {f'{name}.weight', f'{name}.bias'}
    return names


def test_mean_pixel_entropy():
    logits = torch.zeros(2, 4, 3, 5)
    torch.testing.assert_close(
        mean_pixel_entropy(logits), torch.log(torch.tensor(4.0))
    )
    confident = torch.zeros(1, 4, 2, 2)
    confident[:, 0] = 100.0
    assert float(mean_pixel_entropy(confident)) < 1e-6


@pytest.mark.parametrize('steps', [1, 3])
def test_tent_lowers_the_entropy_and_freezes_the_rest(steps):
    model = build('TentSegmentor', steps=steps)
    source = state(model)
    inputs = batch(1)
    before = entropy(model, inputs)
    with torch.no_grad():  # as mmengine's test loop calls it
        model.predict(inputs)
    assert entropy(model, inputs) < before
    adapted = affine_names(model.segmentor)
    after = model.segmentor.state_dict()
    changed = {
        name
        for name, value in after.items()
        if not torch.equal(value, source['segmentor.' + name])
    }
    assert changed and changed <= adapted
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_tent_keeps_the_requires_grad_flags():
    frozen = copy.deepcopy(SEGMENTOR)
    frozen['backbone']['norm_cfg'] = dict(type='BN', requires_grad=False)
    model = build('TentSegmentor', segmentor=frozen)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    source = state(model)
    with torch.no_grad():
        model.predict(batch(1))
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}
    # A frozen BN layer is adapted all the same: TENT's parameters.
    stem = 'segmentor.backbone.stem.1.weight'
    assert not torch.equal(model.state_dict()[stem], source[stem])


def test_tent_reset_restores_exactly_and_restarts_the_optimizer():
    model = build('TentSegmentor', steps=2)
    fresh = copy.deepcopy(model)
    source = state(model)
    with torch.no_grad():
        model.predict(batch(1))
        model.reset()
        assert_same_state(model, source)
        again = model.predict(batch(2))
        alone = fresh.predict(batch(2))
    torch.testing.assert_close(
        again[0].seg_logits.data, alone[0].seg_logits.data, rtol=0, atol=0
    )


@pytest.mark.parametrize('episodic', [True, False])
def test_tent_episodic_starts_each_batch_from_the_source(episodic):
    model = build('TentSegmentor', episodic=episodic)
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        model.predict(batch(1))
        model.predict(batch(2))
        fresh.predict(batch(2))
    same = all(
        torch.equal(a, b)
        for a, b in zip(model.adapted_tensors(), fresh.adapted_tensors())
    )
    assert same == episodic


def test_tent_under_inference_mode_says_it_needs_gradients():
    model = build('TentSegmentor')
    with torch.inference_mode(), pytest.raises(RuntimeError, match='grad'):
        model.predict(batch(1))


# -- both -----------------------------------------------------------------
@pytest.mark.parametrize('kind', ['OnlineBNSegmentor', 'TentSegmentor'])
def test_loading_a_checkpoint_makes_it_the_source(kind):
    model = (
        build(kind, momentum=0.5)
        if kind == 'OnlineBNSegmentor'
        else (build(kind))
    )
    other = (
        build(kind, momentum=0.5)
        if kind == 'OnlineBNSegmentor'
        else (build(kind))
    )
    with torch.no_grad():
        for m in bn_layers(other):
            m.running_mean.add_(1.0)
            m.weight.mul_(2.0)
    checkpoint = state(other)
    with torch.no_grad():
        model.predict(batch(1))
        model.segmentor.load_state_dict(
            {k[len('segmentor.') :]: v for k, v in checkpoint.items()}
        )
        model.predict(batch(2))
    model.reset()
    assert_same_state(model, checkpoint)


@pytest.mark.parametrize('kind', ['OnlineBNSegmentor', 'TentSegmentor'])
def test_test_step_returns_predictions(kind):
    model = build(kind)
    samples = [
        SegDataSample(
            metainfo=dict(img_shape=SIZE, ori_shape=SIZE, pad_shape=SIZE)
        )
        for _ in range(3)
    ]
    images = [torch.randint(0, 256, (3, *SIZE), dtype=torch.uint8)] * 3
    with torch.no_grad():
        out = model.test_step(dict(inputs=images, data_samples=samples))
    assert len(out) == 3
    for sample in out:
        assert isinstance(sample, SegDataSample)
        assert sample.pred_sem_seg.data.shape == (1, *SIZE)


@pytest.mark.parametrize('kind', sorted(CAMVID_CONFIGS))
@pytest.mark.parametrize('n', [2, 1])
def test_camvid_config_builds_and_adapts_on_cpu(kind, n):
    """The project's CamVid model through the registry, at batch 1 too
    (the ASPP image-pooling BN then keeps its running statistics)."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(CONFIGS / CAMVID_CONFIGS[kind]))
    assert cfg.model.type == kind
    cfg.model.segmentor.backbone.pretrained = None  # no weights needed
    model = MODELS.build(cfg.model).eval()
    size = (48, 64)
    samples = [
        SegDataSample(
            metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size)
        )
        for _ in range(n)
    ]
    source = state(model)
    with torch.no_grad():
        out = model.predict(torch.randn(n, 3, *size), samples)
    assert [s.pred_sem_seg.data.shape for s in out] == [(1, *size)] * n
    model.reset()
    assert_same_state(model, source)


# -- bad input ------------------------------------------------------------
def without_batchnorm():
    cfg = copy.deepcopy(SEGMENTOR)
    cfg['backbone']['norm_cfg'] = dict(type='GN', num_groups=2)
    cfg['decode_head']['norm_cfg'] = dict(type='GN', num_groups=2)
    return cfg


@pytest.mark.faults
@pytest.mark.parametrize('kind', ['OnlineBNSegmentor', 'TentSegmentor'])
def test_a_segmentor_without_batchnorm_is_refused(kind):
    with pytest.raises(ValueError, match=f'{kind} adapts .*GroupNorm'):
        build(kind, segmentor=without_batchnorm())


@pytest.mark.faults
@pytest.mark.parametrize(
    'kind, kwargs, match',
    [
        ('OnlineBNSegmentor', dict(momentum=0.0), 'momentum'),
        ('OnlineBNSegmentor', dict(momentum=1.5), 'momentum'),
        ('TentSegmentor', dict(steps=0), 'steps'),
        ('TentSegmentor', dict(steps=1.5), 'steps'),
        (
            'TentSegmentor',
            dict(optimizer=dict(type='SGD', lr=0.1, params=[])),
            'params',
        ),
    ],
)
def test_bad_arguments_are_refused(kind, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(kind, **kwargs)
