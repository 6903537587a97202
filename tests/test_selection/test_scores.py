import math

import numpy as np
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg_gearnn.selection import (
    BN_BUFFER,
    PARAM,
    BatchSource,
    compute_scores,
    gradient_statistics,
    list_candidates,
    model_total_bytes,
    normalize_scores,
    parse_levels,
)

ALL_METHODS = ('weight_change', 'fisher', 'rgn', 'bn', 'all', 'random')


def state_copy(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_candidates_are_params_and_bn_statistics(tiny_model):
    infos = list_candidates(tiny_model)
    names = [t.name for t in infos]
    params = dict(tiny_model.named_parameters())
    assert set(params) <= set(names)
    assert 'backbone.stem.1.running_mean' in names
    assert 'backbone.layer1.0.bn1.running_var' in names
    assert not any(n.endswith('num_batches_tracked') for n in names)
    assert 'data_preprocessor.mean' not in names
    bn_stats = [
        f'{m}.{b}'
        for m, mod in tiny_model.named_modules()
        if isinstance(mod, _BatchNorm)
        for b in ('running_mean', 'running_var')
    ]
    assert set(names) == set(params) | set(bn_stats)
    for t in infos:
        expected_kind = PARAM if t.name in params else BN_BUFFER
        assert t.kind == expected_kind
        assert t.bytes == 4 * t.numel
    # state_dict order.
    order = list(tiny_model.state_dict())
    assert names == sorted(names, key=order.index)
    total = sum(p.numel() * 4 for p in tiny_model.parameters())
    total += sum(b.numel() * b.element_size() for b in tiny_model.buffers())
    assert model_total_bytes(tiny_model) == total


@pytest.mark.parametrize('method', ALL_METHODS)
def test_every_method_scores_every_candidate(method, tiny_model, source):
    before = state_copy(tiny_model)
    levels = parse_levels(source.space)
    result = compute_scores(
        method,
        tiny_model,
        source=source,
        levels=levels,
        steps=2,
        seed=0,
        progress=False,
    )
    names = [t.name for t in list_candidates(tiny_model)]
    assert list(result.scores) == names
    assert list(result.raw_scores) == names
    for table in (result.scores, result.raw_scores):
        assert all(math.isfinite(v) and v >= 0 for v in table.values())
    assert result.method == method
    # The model is never modified.
    after = tiny_model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    if method in ('weight_change', 'fisher', 'rgn'):
        # Every level was read, and the scores are informative.
        assert set(source.requests) == set(levels)
        assert result.options['steps'] == 2
        raw = np.array(list(result.raw_scores.values()))
        assert (raw > 0).all()
        assert len(set(result.scores.values())) > len(names) // 2
        assert max(result.scores.values()) == 1.0


def test_weight_change_matches_a_manual_fine_tune(tiny_model, source):
    import copy

    levels = [('brightness', 0.2)]
    result = compute_scores(
        'weight_change',
        tiny_model,
        source=source,
        levels=levels,
        steps=2,
        seed=3,
        normalize='none',
        progress=False,
        lr=0.05,
        momentum=0.0,
    )
    work = copy.deepcopy(tiny_model).train()
    before = state_copy(work)
    torch.manual_seed(3)
    optim = torch.optim.SGD(work.parameters(), lr=0.05)
    batches = source.level_batches(*levels[0])
    for _ in range(2):
        optim.zero_grad()
        data = work.data_preprocessor(next(batches), True)
        loss, _ = work.parse_losses(work(**data, mode='loss'))
        loss.backward()
        optim.step()
    after = work.state_dict()
    for name in ('decode_head.conv_seg.weight', 'backbone.stem.1.running_var'):
        expected = (after[name] - before[name]).norm() / before[name].norm()
        assert result.raw_scores[name] == pytest.approx(
            expected.item(), rel=1e-4
        )


def test_gradient_statistics_match_manual_computation(tiny_model, source):
    batch = next(source.level_batches('gaussian_noise', 40))
    stats = gradient_statistics(
        tiny_model, iter([batch]), num_batches=1, progress=False
    )
    model = tiny_model.eval()
    captured = {}
    handle = model.backbone.stem[1].register_forward_pre_hook(
        lambda m, args: captured.setdefault('x', args[0].detach())
    )
    data = model.data_preprocessor(batch, True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    handle.remove()
    w = model.decode_head.conv_seg.weight
    g = w.grad
    name = 'decode_head.conv_seg.weight'
    assert stats['fisher'][name] == pytest.approx(
        (g.double() ** 2 * w.double() ** 2).mean().item(), rel=1e-5
    )
    assert stats['rgn'][name] == pytest.approx(
        (g.norm() / w.norm()).item(), rel=1e-5
    )
    bn = model.backbone.stem[1]
    x = captured['x'].double()
    mu_d, var_d = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    var = bn.running_var.double() + bn.eps
    mean_shift = ((mu_d - bn.running_mean) / var.sqrt()).abs().mean()
    var_shift = ((var_d - bn.running_var) / var).abs().mean()
    assert stats['bn_shift']['backbone.stem.1.running_mean'] == (
        pytest.approx(mean_shift.item(), rel=1e-6)
    )
    assert stats['bn_shift']['backbone.stem.1.running_var'] == (
        pytest.approx(var_shift.item(), rel=1e-6)
    )


def test_fisher_reads_steps_per_level_of_mixed_batches(
    tiny_model, space, make_source
):
    class Counting(BatchSource):
        def __init__(self, inner):
            self.inner, self.count = inner, 0

        def level_batches(self, distortion_type, level):
            for batch in self.inner.level_batches(distortion_type, level):
                self.count += 1
                yield batch

    src = Counting(make_source(space))
    levels = parse_levels(space, ['brightness'])
    compute_scores('fisher', tiny_model, src, levels, steps=2, progress=False)
    assert src.count == 2 * len(levels) == 4


def test_bn_all_random_scores(tiny_model):
    infos = list_candidates(tiny_model)
    bn = compute_scores('bn', tiny_model).scores
    assert {n for n, v in bn.items() if v == 1.0} == {
        t.name for t in infos if t.is_bn
    }
    assert {n for n, v in bn.items() if v == 0.0} == {
        t.name for t in infos if not t.is_bn
    }
    assert set(compute_scores('all', tiny_model).scores.values()) == {1.0}
    r0 = compute_scores('random', tiny_model, seed=0).scores
    assert r0 == compute_scores('random', tiny_model, seed=0).scores
    assert r0 != compute_scores('random', tiny_model, seed=1).scores
    assert all(0 <= v < 1 for v in r0.values())
    # Baselines are never normalised.
    assert compute_scores('random', tiny_model, normalize='max').scores == r0


def test_normalisations_make_families_comparable():
    raw = dict(a=0.0, b=2.0, c=4.0, d=4.0, x=100.0, y=300.0)
    kinds = dict(a=PARAM, b=PARAM, c=PARAM, d=PARAM, x=BN_BUFFER, y=BN_BUFFER)
    rank = normalize_scores(raw, kinds, 'rank')
    assert rank == dict(a=0.0, b=0.5, c=0.875, d=0.875, x=0.5, y=1.0)
    top = normalize_scores(raw, kinds, 'max')
    assert top == dict(a=0.0, b=0.5, c=1.0, d=1.0, x=1 / 3, y=1.0)
    assert normalize_scores(raw, kinds, 'none') == raw
    with pytest.raises(ValueError, match='unknown normalisation'):
        normalize_scores(raw, kinds, 'zscore')


def test_data_methods_need_data_and_levels(tiny_model, source):
    with pytest.raises(ValueError, match='needs a BatchSource'):
        compute_scores('fisher', tiny_model, levels=[('brightness', 0.2)])
    with pytest.raises(ValueError, match='level subset is empty'):
        compute_scores('rgn', tiny_model, source, levels=[])
    with pytest.raises(ValueError, match='steps must be an integer >= 1'):
        compute_scores(
            'rgn', tiny_model, source, [('brightness', 0.2)], steps=0
        )
    with pytest.raises(ValueError, match="unknown scoring method 'nope'"):
        compute_scores('nope', tiny_model)


def test_non_finite_loss_is_reported(tiny_model, source):
    with pytest.raises(FloatingPointError, match='lower the learning rate'):
        compute_scores(
            'weight_change',
            tiny_model,
            source,
            [('brightness', 0.2)],
            steps=3,
            progress=False,
            lr=1e12,
        )


def test_parse_levels(space):
    every = [('brightness', 0.5), ('brightness', 0.2), ('gaussian_noise', 40)]
    assert parse_levels(space) == every
    assert parse_levels(space, ['3', 'brightness:0.5']) == [
        ('brightness', 0.5),
        ('gaussian_noise', 40),
    ]
    assert parse_levels(space, ['brightness']) == every[:2]
    assert parse_levels(space, [('gaussian_noise', 40), 3]) == every[2:]
    with pytest.raises(ValueError, match='clean gear'):
        parse_levels(space, ['0'])
    with pytest.raises(ValueError, match='outside the gear table'):
        parse_levels(space, [7])
    with pytest.raises(ValueError, match='not in the distortion space'):
        parse_levels(space, ['jpeg:10'])
    with pytest.raises(ValueError, match='level subset is empty'):
        parse_levels(space, [])
