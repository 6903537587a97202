"""OnlineBNSegmentor and TentSegmentor over a GearNNSegmentor: each frame
runs on its routed gear and the adaptation works on top of it, one adapted
state per route."""

import copy

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from toys import tiny_segmentor

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.distortions import build_space

SIZE = (32, 32)
SPACE = dict(distortions=dict(jpeg=[40, 10], brightness=[0.3]))
SEGMENTOR = tiny_segmentor(SIZE, num_classes=4)
GEARNN = dict(type='GearNNSegmentor', segmentor=SEGMENTOR, space=SPACE)
# Online BN with a momentum and TENT carry state along the stream.
KINDS = [
    ('OnlineBNSegmentor', dict(momentum=0.5)),
    ('TentSegmentor', dict(optimizer=dict(type='Adam', lr=0.05))),
]


def gear_model(seed: int = 0):
    """A GearNN model whose base statistics and gears (BN affine and
    statistics) all differ, in eval mode."""
    init_default_scope('mmseg')
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(GEARNN))
    model.init_weights()
    with torch.no_grad():
        for name, t in model.segmentor.state_dict().items():
            if name.endswith(('running_mean', 'bias')):
                t.uniform_(-0.5, 0.5)
            elif name.endswith(('running_var', 'weight')) and t.dim() == 1:
                t.uniform_(0.5, 2.0)
        for gear in range(1, model.gear_bank.num_gears):
            for name, t in model.gear_bank.tensors(gear).items():
                if t.is_floating_point():
                    t.add_(0.3 * gear * torch.rand_like(t))
    return model.eval()


def over_gears(kind: str, gearnn, **kwargs):
    """The wrapper ``kind`` over a GearNN model holding ``gearnn``'s
    weights and gears."""
    init_default_scope('mmseg')
    model = MODELS.build(
        dict(type=kind, segmentor=copy.deepcopy(GEARNN), **kwargs)
    )
    model.segmentor.load_state_dict(gearnn.state_dict())
    return model.eval()


def on_one_gear(kind: str, gearnn, gear: int, **kwargs):
    """The wrapper ``kind`` over the bare segmentor holding ``gear``'s
    tensors: what the route of ``gear`` must compute."""
    init_default_scope('mmseg')
    model = MODELS.build(
        dict(type=kind, segmentor=copy.deepcopy(SEGMENTOR), **kwargs)
    )
    gearnn.restore_base()
    state = {k: v.clone() for k, v in gearnn.segmentor.state_dict().items()}
    for name, t in gearnn.gear_bank.tensors(gear).items():
        state[name] = t.detach().clone()
    model.segmentor.load_state_dict(state)
    return model.eval()


def frames(gears, seed: int):
    """Inputs shifted away from the source statistics, and samples whose
    distortion metadata routes each to its gear (0: clean)."""
    space = build_space(SPACE)
    g = torch.Generator().manual_seed(seed)
    inputs = 1.0 + 2.0 * torch.randn(len(gears), 3, *SIZE, generator=g)
    samples = []
    for gear in gears:
        meta = dict(
            img_shape=SIZE,
            ori_shape=SIZE,
            pad_shape=SIZE,
            padding_size=[0, 0, 0, 0],
        )
        if gear:
            dtype, level = space.level_of(gear)
            meta['distortion'] = dict(type=dtype, level=level, gear=gear)
        samples.append(SegDataSample(metainfo=meta))
    return inputs, samples


def logits(results) -> torch.Tensor:
    return torch.stack([r.seg_logits.data for r in results])


def full_state(gearnn) -> dict:
    gearnn.restore_base()
    return {k: v.clone() for k, v in gearnn.state_dict().items()}


@pytest.mark.parametrize('episodic', [False, True])
@pytest.mark.parametrize('kind,kwargs', KINDS)
def test_each_route_adapts_its_gear_as_a_wrapper_of_its_own(
    kind, kwargs, episodic
):
    gearnn = gear_model()
    model = over_gears(kind, gearnn, episodic=episodic, **kwargs)
    # One wrapper per gear over the bare segmentor holding that gear.
    alone = {
        g: on_one_gear(kind, gearnn, g, episodic=episodic, **kwargs)
        for g in (0, 1, 3)
    }
    # The stream comes back to gear 1 after gear 3, and a batch mixes
    # routes: gear 1 must resume its own adaptation, untouched by gear 3's
    # frames (episodic: start from gear 1 as trained every batch).
    stream = [[1, 1], [3, 3], [1, 1], [3, 3, 1, 1, 0, 0], [1, 1]]
    for step, gears in enumerate(stream):
        inputs, samples = frames(gears, seed=step)
        got = logits(model.predict(inputs, samples))
        for g in sorted(set(gears)):
            idx = [i for i, x in enumerate(gears) if x == g]
            expected = logits(
                alone[g].predict(inputs[idx], [samples[i] for i in idx])
            )
            torch.testing.assert_close(
                got[idx], expected, atol=1e-5, rtol=1e-5
            )


@pytest.mark.parametrize('kind,kwargs', KINDS)
def test_the_gear_model_never_keeps_an_adapted_value(kind, kwargs):
    gearnn = gear_model()
    model = over_gears(kind, gearnn, **kwargs)
    before = full_state(model.segmentor)
    for step, gears in enumerate([[0, 0], [1, 1], [2, 2, 0, 0], [1, 1]]):
        model.predict(*frames(gears, seed=step))
    after = full_state(model.segmentor)
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    # The unadapted paths still compute the gears as trained.
    inputs, samples = frames([1, 1], seed=9)
    torch.testing.assert_close(
        logits(model.segmentor.predict(inputs, samples)),
        logits(gearnn.predict(inputs, samples)),
    )


@pytest.mark.parametrize('kind,kwargs', KINDS)
def test_reset_starts_every_route_from_its_gear_again(kind, kwargs):
    gearnn = gear_model()
    model = over_gears(kind, gearnn, **kwargs)
    for step, gears in enumerate([[1, 1], [3, 3], [1, 1]]):
        model.predict(*frames(gears, seed=step))
    model.reset()
    inputs, samples = frames([3, 3, 1, 1], seed=7)
    got = logits(model.predict(inputs, samples))
    for g, idx in ((3, [0, 1]), (1, [2, 3])):
        fresh = on_one_gear(kind, gearnn, g, **kwargs)
        expected = logits(
            fresh.predict(inputs[idx], samples[idx[0] : idx[-1] + 1])
        )
        torch.testing.assert_close(got[idx], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('kind,kwargs', KINDS)
def test_a_gearnn_checkpoint_loads_into_the_wrapper(kind, kwargs, tmp_path):
    gearnn = gear_model(seed=1)
    path = tmp_path / 'gears.pth'
    torch.save(dict(state_dict=gearnn.state_dict()), path)
    init_default_scope('mmseg')
    torch.manual_seed(5)
    model = MODELS.build(
        dict(type=kind, segmentor=copy.deepcopy(GEARNN), **kwargs)
    ).eval()
    load_checkpoint(model, str(path), strict=True)
    expected = full_state(gearnn)
    actual = full_state(model.segmentor)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key
    # The wrapper's own checkpoint loads as it is.
    again = MODELS.build(
        dict(type=kind, segmentor=copy.deepcopy(GEARNN), **kwargs)
    ).eval()
    again.load_state_dict(model.state_dict(), strict=True)
    for key, value in expected.items():
        assert torch.equal(full_state(again.segmentor)[key], value), key


@pytest.mark.faults
@pytest.mark.parametrize('kind,kwargs', KINDS)
def test_a_wrapper_over_a_wrapper_is_refused(kind, kwargs):
    init_default_scope('mmseg')
    inner = dict(type='OnlineBNSegmentor', segmentor=copy.deepcopy(GEARNN))
    with pytest.raises(ValueError, match='another test-time adaptation'):
        MODELS.build(dict(type=kind, segmentor=inner, **kwargs))


@pytest.mark.faults
def test_predicting_over_gears_in_training_mode_is_refused():
    model = over_gears('TentSegmentor', gear_model())
    model.train()
    with pytest.raises(RuntimeError, match=r'call model\.eval\(\) first'):
        model.predict(*frames([1, 1], seed=0))


@pytest.mark.faults
def test_predicting_over_gears_before_the_selection_is_refused():
    init_default_scope('mmseg')
    model = MODELS.build(
        dict(
            type='OnlineBNSegmentor',
            segmentor=dict(
                copy.deepcopy(GEARNN),
                adaptor=dict(budget=0.01, method='fisher'),
            ),
        )
    ).eval()
    with pytest.raises(RuntimeError, match='has not been selected yet'):
        model.predict(*frames([1, 1], seed=0))
