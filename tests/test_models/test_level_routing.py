"""GearNNSegmentor at levels between gears (nearest vs interpolated
adaptors) and on compound distortions (dominant, first, blend)."""

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
from toys import tiny_segmentor, write_selection

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.distortions import compound_record

# Gears: 1 jpeg 40, 2 jpeg 10, 3 brightness 0.3.
SPACE = dict(distortions=dict(jpeg=[40, 10], brightness=[0.3]))
SIZE = (32, 32)
SEGMENTOR = tiny_segmentor(SIZE, num_classes=4)


def build(space=SPACE, **kwargs):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    kwargs.setdefault('adaptor', 'bn')
    model = MODELS.build(
        ConfigDict(
            type='GearNNSegmentor',
            segmentor=SEGMENTOR,
            space=space,
            **kwargs,
        )
    )
    model.init_weights()
    # Every gear its own tensors, far enough apart to change predictions.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for gear in range(1, model.gear_bank.num_gears):
            for name, t in model.gear_bank.tensors(gear).items():
                if name.endswith('num_batches_tracked'):
                    t.fill_(10 * gear)
                elif name.endswith('running_var'):
                    t.uniform_(0.5, 2.0, generator=g)
                else:
                    t.add_(torch.randn(t.shape, generator=g) * 0.5)
    return model.eval()


def batch(distortions, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for distortion in distortions:
        meta = dict(img_shape=SIZE, ori_shape=SIZE, pad_shape=SIZE)
        if distortion is not None:
            meta['distortion'] = distortion
        sample = SegDataSample(metainfo=meta)
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 4, (1, *SIZE), generator=g)
        )
        samples.append(sample)
    inputs = [
        torch.randint(0, 256, (3, *SIZE), generator=g, dtype=torch.uint8)
        for _ in distortions
    ]
    return dict(inputs=inputs, data_samples=samples)


def logits(model, distortions, seed=0):
    out = model.test_step(batch(distortions, seed))
    return [s.seg_logits.data for s in out]


def jpeg(level, gear=None):
    return dict(type='jpeg', level=level, gear=gear)


CLEAN = dict(type='clean', level=None, gear=0)


def hand_blended(model, pairs):
    """A copy of the model whose base holds the blend, made by hand."""
    ref = copy.deepcopy(model)
    ref.restore_base()
    heaviest = max(pairs, key=lambda p: p[1])[0]
    live = ref.gear_bank.live_tensors()
    with torch.no_grad():
        for name in ref.gear_bank.names:
            tensors = [ref.gear_bank.tensors(g)[name] for g, _ in pairs]
            if tensors[0].is_floating_point():
                value = sum(w * t for (_, w), t in zip(pairs, tensors))
            else:
                value = ref.gear_bank.tensors(heaviest)[name]
            live[name].copy_(value)
    return ref


def test_interpolated_level_runs_the_blend_of_the_two_gears():
    model = build(level_routing='interpolate')
    base = copy.deepcopy(model.segmentor.state_dict())
    # jpeg 20 is between 40 (gear 1) and 10 (gear 2), a third of the way
    # to 10; its recorded gear is some other table's and is ignored.
    blended = logits(model, [jpeg(20, gear=7)])[0]
    sample = batch([jpeg(20, gear=7)])['data_samples'][0]
    assert model.route(torch.zeros(1, 3, *SIZE), [sample]) == [
        ((1, pytest.approx(1 / 3)), (2, pytest.approx(2 / 3)))
    ]
    assert sample.metainfo['gear_routed'] == 2
    assert model.metadata_gear(sample) == 2
    ref = hand_blended(model, [(1, 1 / 3), (2, 2 / 3)])
    expected = logits(ref, [CLEAN])[0]
    torch.testing.assert_close(blended, expected, atol=1e-5, rtol=1e-5)
    # The blend is neither gear alone.
    for level in (40, 10):
        alone = logits(model, [jpeg(level)])[0]
        assert not torch.allclose(alone, blended, atol=1e-3)
    # Integer buffers are the heavier gear's.
    model.switch_blend([(1, 0.2), (2, 0.8)])
    live = model.gear_bank.live_tensors()
    counts = [n for n in model.gear_bank.names if 'num_batches' in n]
    assert counts and all(int(live[n]) == 20 for n in counts)
    model.switch_blend([(1, 0.8), (2, 0.2)])
    assert all(int(live[n]) == 10 for n in counts)
    # The base is back afterwards, whatever ran before.
    model.restore_base()
    for key, value in model.segmentor.state_dict().items():
        assert torch.equal(value, base[key]), key
    assert model.state_dict().keys() == build().state_dict().keys()


def test_base_restored_after_blends_between_gears():
    model = build(level_routing='interpolate')
    before = copy.deepcopy(model.state_dict())
    clean_before = logits(model, [CLEAN])[0]
    # clean -> blend -> gear -> blend -> other blend, in one batch and
    # across batches.
    logits(model, [jpeg(20), jpeg(10), jpeg(30), jpeg(15)])
    logits(model, [jpeg(25)])
    assert isinstance(model.gear_bank.active, tuple)
    torch.testing.assert_close(logits(model, [CLEAN])[0], clean_before)
    logits(model, [jpeg(25)])
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    model.train()
    for key, value in model.segmentor.state_dict().items():
        assert torch.equal(value, before[f'segmentor.{key}']), key


def test_mixed_batch_with_blends_matches_samples_alone():
    model = build(level_routing='interpolate')
    distortions = [jpeg(20), CLEAN, jpeg(40), jpeg(15), jpeg(20)]
    together = logits(model, distortions, seed=3)
    full = batch(distortions, seed=3)
    for i in range(len(distortions)):
        alone = model.test_step(
            dict(
                inputs=[full['inputs'][i]],
                data_samples=[copy.deepcopy(full['data_samples'][i])],
            )
        )[0].seg_logits.data
        torch.testing.assert_close(together[i], alone, atol=1e-5, rtol=1e-5)


def test_nearest_still_snaps_and_checks_listed_levels():
    snapping = dict(SPACE, snap='nearest')
    model = build(space=snapping)
    assert model.router.level_routing == 'nearest'
    # 20 snaps to 10 (gear 2); the other table's gear is ignored.
    snapped = logits(model, [jpeg(20, gear=7)])[0]
    torch.testing.assert_close(snapped, logits(model, [jpeg(10)])[0])
    # A listed level with a wrong gear is still an error.
    with pytest.raises(ValueError, match='disagrees with the gear table'):
        logits(model, [jpeg(40, gear=2)])
    interpolating = build(space=snapping, level_routing='interpolate')
    with pytest.raises(ValueError, match='disagrees with the gear table'):
        logits(interpolating, [jpeg(40, gear=2)])
    # Without snapping, 'nearest' refuses an unlisted level.
    strict = build()
    with pytest.raises(ValueError, match="level_routing='interpolate'"):
        logits(strict, [jpeg(20)])
    # Beyond the range, interpolation takes the nearest end gear.
    end = logits(build(level_routing='interpolate'), [jpeg(80)])[0]
    torch.testing.assert_close(end, logits(strict, [jpeg(40)])[0])


def train_step(model, distortions):
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    model.train()
    return model.train_step(batch(distortions), optim)


def test_training_refuses_blends():
    model = build(level_routing='interpolate')
    assert torch.isfinite(train_step(model, [jpeg(10), jpeg(10)])['loss'])
    with pytest.raises(ValueError, match='inference only'):
        train_step(model, [jpeg(10), jpeg(20)])
    blending = build(compound_routing='blend')
    compound = compound_record([('brightness', 0.3), ('jpeg', 10)])
    with pytest.raises(ValueError, match='inference only'):
        train_step(blending, [compound, compound])


def routes(model, distortions):
    data = batch(distortions)
    return model.route(
        torch.zeros(len(distortions), 3, *SIZE), data['data_samples']
    )


def test_compound_policies_route_as_documented(tmp_path):
    bright_then_jpeg40 = compound_record([('brightness', 0.3), ('jpeg', 40)])
    jpeg40_then_bright = compound_record([('jpeg', 40), ('brightness', 0.3)])
    jpeg10_then_bright = compound_record([('jpeg', 10), ('brightness', 0.3)])
    cases = [bright_then_jpeg40, jpeg40_then_bright, jpeg10_then_bright]

    first = build(compound_routing='first')
    assert routes(first, cases) == [3, 1, 2]
    # By rank within the type: brightness 0.3 is 1/1, jpeg 40 is 1/2 and
    # jpeg 10 is 2/2; a tie goes to the component applied first.
    dominant = build(compound_routing='dominant')
    assert routes(dominant, cases) == [3, 3, 2]
    # By the clean model's measured drop (a DistortionIoUMetric report).
    report = dict(
        clean=60.0,
        levels={
            'jpeg': {'40': 55.0, '10': 50.0},
            'brightness': {'0.3': 52.0},
        },
    )
    path = tmp_path / 'levels.json'
    path.write_text(json.dumps(report))
    measured = build(compound_routing='dominant', compound_severity=str(path))
    assert measured.router.severity == [0.0, 5.0, 10.0, 8.0]
    assert routes(measured, cases) == [3, 3, 2]
    by_dict = build(
        compound_routing='dominant',
        compound_severity=dict(
            jpeg={40: 9.0, 10: 20.0}, brightness={'0.3': 1.0}
        ),
    )
    assert routes(by_dict, cases) == [1, 1, 2]
    # An unlisted component level under interpolation: the severity too.
    assert by_dict.router.severity_of('jpeg', 25) == pytest.approx(14.5)

    blend = build()
    assert blend.router.compound_routing == 'blend'
    assert routes(blend, cases) == [
        ((1, 0.5), (3, 0.5)),
        ((1, 0.5), (3, 0.5)),
        ((2, 0.5), (3, 0.5)),
    ]
    # Components between gears blend their bracketing gears, each share
    # split by the level's weights.
    both = build(compound_routing='blend', level_routing='interpolate')
    mid = compound_record([('jpeg', 20), ('brightness', 0.3)])
    [route] = routes(both, [mid])
    assert dict(route) == pytest.approx({1: 1 / 6, 2: 1 / 3, 3: 0.5})
    # The blend runs what switch_blend computes.
    torch.testing.assert_close(
        logits(blend, [jpeg10_then_bright])[0],
        logits(hand_blended(blend, [(2, 0.5), (3, 0.5)]), [CLEAN])[0],
        atol=1e-5,
        rtol=1e-5,
    )
    # Single-gear policies run that gear.
    torch.testing.assert_close(
        logits(dominant, [bright_then_jpeg40])[0],
        logits(dominant, [dict(type='brightness', level=0.3, gear=3)])[0],
    )


def test_default_routing_ignores_metadata():
    model = build(routing='default')
    compound = compound_record([('brightness', 0.3), ('jpeg', 33)])
    assert routes(model, [jpeg(10), compound, None]) == [0, 0, 0]
    torch.testing.assert_close(
        logits(model, [jpeg(10)])[0], logits(build(), [CLEAN])[0]
    )


@pytest.mark.faults
def test_routing_option_errors(tmp_path):
    with pytest.raises(ValueError, match='level_routing must be one of'):
        build(level_routing='linear')
    with pytest.raises(ValueError, match='compound_routing must be one of'):
        build(compound_routing='worst')
    with pytest.raises(ValueError, match=r'no value for \(jpeg, 10\)'):
        build(compound_severity=dict(jpeg={40: 1.0}, brightness={0.3: 1}))
    with pytest.raises(FileNotFoundError, match='report not found'):
        build(compound_severity=str(tmp_path / 'missing.json'))
    model = build()
    bad = dict(type='jpeg+fog', level='10+1', gear=None, components=[])
    with pytest.raises(ValueError, match='not in the distortion space'):
        routes(model, [bad])
    with pytest.raises(ValueError, match='has a type but no level'):
        routes(model, [dict(type='jpeg', gear=None)])


def test_selection_of_the_same_table_loads_under_another_snap(tmp_path):
    model = build()
    names = model.adaptor_names[:4]
    selection = write_selection(
        tmp_path / 'selection.json',
        names,
        dict(SPACE, snap='error'),
        model.segmentor,
    )
    model = build(space=dict(SPACE, snap='nearest'), adaptor=selection)
    assert model.adaptor_names[:4] == names
    other = dict(distortions=dict(jpeg=[40, 10], brightness=[0.2]))
    write_selection(selection, names, other, model.segmentor)
    with pytest.raises(ValueError, match='another distortion space'):
        build(adaptor=selection)
