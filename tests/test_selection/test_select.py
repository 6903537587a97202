import copy
import json
import os

import pytest
import torch
from mmengine.config import Config

from mmseg_gearnn.selection import (
    FORMAT_VERSION,
    base_model_cfg,
    list_candidates,
    load_base_checkpoint,
    load_selection,
    model_total_bytes,
    replace_distortion,
    reselect,
    resolve_budget,
    run_selection,
    save_selection,
    select_tensors,
    space_from_config,
    with_distortion,
)


def select(model, space, method='random', **kwargs):
    kwargs.setdefault('budget', 0.05)
    return run_selection(model, space, method, progress=False, **kwargs)


def test_selection_record_and_round_trip(tiny_model, space, source, tmp_path):
    out = tmp_path / 'sub' / 'selection.json'
    ckpt = tmp_path / 'base.pth'
    torch.save(dict(state_dict=tiny_model.state_dict()), ckpt)
    record = select(
        tiny_model,
        space,
        'fisher',
        source=source,
        steps=1,
        seed=5,
        checkpoint=str(ckpt),
        config='some/config.py',
        out=str(out),
    )
    assert out.is_file()
    assert not [p for p in os.listdir(out.parent) if p != 'selection.json']
    loaded = load_selection(str(out), model=tiny_model, space=space)
    assert loaded == json.loads(json.dumps(record))
    total = model_total_bytes(tiny_model)
    infos = {t.name: t for t in list_candidates(tiny_model)}
    budget = record['budget']
    assert record['format_version'] == FORMAT_VERSION
    assert record['model_total_bytes'] == total
    assert budget['asked_fraction'] == 0.05
    assert budget['asked_bytes'] == int(0.05 * total)
    # A BN layer's statistics come as a pair, with their 8-byte counter.
    stats = [n for n in record['selected'] if infos[n].kind == 'bn_buffer']
    layers = {n.rpartition('.')[0] for n in stats}
    assert len(stats) == 2 * len(layers)
    assert budget['used_bytes'] == sum(
        infos[n].bytes for n in record['selected']
    ) + 8 * len(layers)
    assert 0 < budget['used_bytes'] <= budget['asked_bytes']
    assert budget['used_fraction'] == budget['used_bytes'] / total
    assert budget['respected'] is True
    assert record['granularity_bytes'] == 4
    assert record['seed'] == 5
    assert record['config'] == 'some/config.py'
    assert record['checkpoint']['path'] == str(ckpt)
    assert len(record['checkpoint']['sha256']) == 64
    assert record['distortion_space'] == space.to_dict()
    assert record['normalisation']['mode'] == 'rank'
    assert record['method_options']['levels'] == [
        ['brightness', 0.5],
        ['brightness', 0.2],
        ['gaussian_noise', 40],
    ]
    assert [t['name'] for t in record['tensors']] == list(infos)
    for t in record['tensors']:
        assert t['numel'] == infos[t['name']].numel
        assert t['kind'] in ('param', 'bn_buffer')
        assert t['selected'] == (t['name'] in record['selected'])
    comparison = record['greedy_comparison']
    assert comparison['dp_minus_greedy'] == pytest.approx(
        comparison['dp_total_score'] - comparison['greedy_total_score']
    )
    assert comparison['dp_total_score'] >= comparison['greedy_total_score']
    assert record['total_score'] == pytest.approx(comparison['dp_total_score'])


def test_budget_in_bytes_and_exact_fill(tiny_model, space):
    infos = list_candidates(tiny_model)
    sizes = sorted(t.bytes for t in infos)
    budget = sum(sizes[:5])
    record = select(
        tiny_model,
        space,
        'all',
        budget=None,
        budget_bytes=budget,
        respect_budget=True,
    )
    # Equal values: the knapsack takes as many tensors as fit, the five
    # smallest, filling the budget to the byte.
    assert record['num_selected'] == 5
    assert record['budget']['used_bytes'] == budget
    assert record['budget']['asked_fraction'] == pytest.approx(
        budget / model_total_bytes(tiny_model)
    )


def test_bn_baseline_selects_exactly_the_bn_tensors(tiny_model, space):
    record = select(tiny_model, space, 'bn', budget=0.001)
    bn = {t.name for t in list_candidates(tiny_model) if t.is_bn}
    assert set(record['selected']) == bn
    assert any(n.endswith('.running_var') for n in bn)
    assert any(n.endswith('.bias') for n in bn)
    assert record['budget']['respected'] is False
    assert record['solver'] == 'full_set'
    assert record['budget']['used_bytes'] > record['budget']['asked_bytes']
    # Asked to respect the budget, it keeps to BN tensors within it.
    bounded = select(
        tiny_model, space, 'bn', budget=0.001, respect_budget=True
    )
    assert set(bounded['selected']) < bn
    assert bounded['budget']['used_bytes'] <= bounded['budget']['asked_bytes']


def test_all_baseline_selects_everything(tiny_model, space):
    record = select(tiny_model, space, 'all', budget=0.01)
    assert record['num_selected'] == len(list_candidates(tiny_model))


def test_training_only_modules_are_never_selected(
    tiny_model_cfg, make_trained_like, space
):
    from mmseg.registry import MODELS

    tiny_model_cfg['auxiliary_head'] = dict(
        tiny_model_cfg['decode_head'],
        channels=4,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4),
    )
    model = make_trained_like(MODELS.build(tiny_model_cfg))
    names = [t.name for t in list_candidates(model)]
    # The auxiliary head's tensors are no candidates at all.
    assert any(n.startswith('auxiliary_head.') for n in model.state_dict())
    assert not [n for n in names if n.startswith('auxiliary_head.')]
    # A budget that holds every tensor: every candidate.
    record = select(model, space, 'all', budget=1.0, respect_budget=True)
    assert record['excluded_modules'] == ['auxiliary_head']
    assert set(record['selected']) == set(names)
    assert not [t for t in record['tensors'] if t['excluded']]
    # Excluding no module changes nothing; a name that is no module is
    # refused.
    record = select(
        model,
        space,
        'all',
        budget=1.0,
        respect_budget=True,
        exclude_modules=(),
    )
    assert set(record['selected']) == set(names)
    with pytest.raises(ValueError, match=r"no module.*'auxiliary'"):
        select(model, space, exclude_modules=['auxiliary'])
    with pytest.raises(ValueError, match='nothing is left to select'):
        select(
            model,
            space,
            exclude_modules=['backbone', 'decode_head', 'auxiliary_head'],
        )


def test_greedy_answer_kept_when_quantisation_costs(tiny_model):
    from mmseg_gearnn.selection import TensorInfo

    infos = [
        TensorInfo('a', 5, 20, 'param', False),
        TensorInfo('b', 5, 20, 'param', False),
    ]
    scores = dict(a=1.0, b=1.0)
    # Granularity 16: each 20-byte tensor takes 2 units, the 40-byte
    # budget holds 2 units, so the DP fits one tensor; greedy fits both.
    outcome = select_tensors(infos, scores, 40, granularity=16)
    assert outcome.dp.indices == [0]
    assert outcome.solver == 'greedy'
    assert outcome.selected == ['a', 'b']


def test_element_value_spends_the_budget_on_the_densest_bytes():
    from mmseg_gearnn.selection import TensorInfo

    # One kernel of 64 elements, slightly more sensitive per element than
    # four 16-element vectors; the budget holds either the kernel or the
    # four vectors.
    infos = [TensorInfo('kernel', 64, 256, 'param', False)] + [
        TensorInfo(f'vector{i}', 16, 64, 'param', True) for i in range(4)
    ]
    scores = dict(kernel=0.9, vector0=0.8, vector1=0.8, vector2=0.8)
    scores['vector3'] = 0.8
    by_tensor = select_tensors(infos, scores, 256)
    by_element = select_tensors(infos, scores, 256, value='element')
    assert sorted(by_tensor.selected) == [f'vector{i}' for i in range(4)]
    assert by_element.selected == ['kernel']
    assert by_element.dp.total_value == pytest.approx(0.9 * 64)
    with pytest.raises(ValueError, match='knapsack value'):
        select_tensors(infos, scores, 256, value='bytes')


def test_knapsack_value_is_recorded(tiny_model, space):
    record = select(tiny_model, space, value='element')
    assert record['knapsack_value'] == 'element'
    assert select(tiny_model, space)['knapsack_value'] == 'tensor'
    with pytest.raises(ValueError, match="unknown knapsack value 'size'"):
        select(tiny_model, space, value='size')


@pytest.mark.faults
def test_impossible_budget_is_explained(tiny_model, space):
    smallest = min(list_candidates(tiny_model), key=lambda t: t.bytes)
    with pytest.raises(ValueError) as err:
        select(tiny_model, space, 'random', budget=None, budget_bytes=8)
    message = str(err.value)
    assert 'budget of 8 bytes' in message
    assert f'smallest candidate tensor, {smallest.name}' in message
    assert f'({smallest.bytes} bytes)' in message
    assert f'--budget-bytes to at least {smallest.bytes}' in message
    with pytest.raises(ValueError, match='no candidate tensor fits'):
        select(
            tiny_model,
            space,
            'random',
            budget=None,
            budget_bytes=smallest.bytes,
            granularity=1024,
        )


def test_budget_arguments_are_checked():
    with pytest.raises(ValueError, match='not both or neither'):
        resolve_budget(100, 0.1, 10)
    with pytest.raises(ValueError, match='not both or neither'):
        resolve_budget(100)
    with pytest.raises(ValueError, match=r'fraction must be in \(0, 1\]'):
        resolve_budget(100, 1.5)
    assert resolve_budget(1000, 0.0025) == dict(
        asked_fraction=0.0025, asked_bytes=2
    )


def test_empty_or_absent_space_is_an_error(tiny_model):
    with pytest.raises(ValueError, match='no top-level `distortion_space`'):
        space_from_config(Config(dict(model=dict())))
    with pytest.raises(ValueError, match='distortion space of the config is'):
        space_from_config(Config(dict(distortion_space=dict())))
    empty = dict(distortion_space=dict(distortions=dict()))
    with pytest.raises(ValueError, match='space of the config is empty'):
        space_from_config(Config(empty))
    with pytest.raises(ValueError, match='the distortion space is empty'):
        select(tiny_model, dict(distortions=dict()), 'random')


@pytest.mark.faults
def test_mismatching_checkpoint_lists_the_keys(tiny_model, tmp_path):
    state = copy.deepcopy(tiny_model.state_dict())
    state.pop('backbone.stem.0.weight')
    state['backbone.extra.weight'] = torch.zeros(2)
    state['decode_head.conv_seg.weight'] = torch.zeros(5, 8, 1, 1)
    path = tmp_path / 'other.pth'
    torch.save(dict(state_dict=state, meta=dict(epoch=1)), path)
    with pytest.raises(ValueError) as err:
        load_base_checkpoint(tiny_model, str(path))
    message = str(err.value)
    assert 'does not match the model' in message
    assert 'missing keys (1): backbone.stem.0.weight' in message
    assert 'unexpected keys (1): backbone.extra.weight' in message
    assert (
        'shape mismatches (1): decode_head.conv_seg.weight (checkpoint '
        '(5, 8, 1, 1), model (3, 8, 1, 1))'
    ) in message
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        load_base_checkpoint(tiny_model, str(tmp_path / 'absent.pth'))


@pytest.mark.parametrize(
    'wrapper', ['GearNNSegmentor', 'DistilledGearNNSegmentor']
)
def test_the_base_of_every_gear_model_is_its_segmentor(
    wrapper, tiny_model_cfg
):
    """A distilled gear config's base used to be the whole wrapper."""
    gear_cfg = dict(type=wrapper, segmentor=tiny_model_cfg, space=None)
    assert base_model_cfg(gear_cfg)['type'] == tiny_model_cfg['type']
    assert base_model_cfg(tiny_model_cfg) is tiny_model_cfg


def test_a_stability_trained_checkpoint_is_a_base(
    tiny_model, tiny_model_cfg, tmp_path
):
    """Gears over a stability-trained model: its checkpoint holds the
    wrapped segmentor under ``segmentor.``; selection used to refuse it
    with every key missing and unexpected."""
    from mmseg_gearnn.models.segmentors import StabilitySegmentor

    wrapper = StabilitySegmentor(segmentor=tiny_model_cfg)
    with torch.no_grad():
        for tensor in wrapper.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(1)
    path = tmp_path / 'stability.pth'
    torch.save(dict(state_dict=wrapper.state_dict()), path)
    load_base_checkpoint(tiny_model, str(path))
    wrapped = wrapper.segmentor.state_dict()
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, wrapped[k]), k


def test_matching_checkpoint_loads(tiny_model, tmp_path):
    state = {k: v + 1 for k, v in tiny_model.state_dict().items()}
    path = tmp_path / 'base.pth'
    torch.save({'module.' + k: v for k, v in state.items()}, path)
    load_base_checkpoint(tiny_model, str(path))
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, state[k])


@pytest.mark.faults
def test_load_selection_rejects_mismatches(tiny_model, space, tmp_path):
    out = str(tmp_path / 'selection.json')
    select(tiny_model, space, 'random', out=out)
    other = copy.deepcopy(tiny_model)
    other.decode_head.conv_seg = torch.nn.Conv2d(8, 5, 1)
    with pytest.raises(ValueError) as err:
        load_selection(out, model=other)
    assert 'decode_head.conv_seg.weight (file 24, model 40)' in str(err.value)
    assert 'decode_head.conv_seg.bias (file 3, model 5)' in str(err.value)
    other.decode_head.conv_seg = torch.nn.Conv2d(8, 3, 1, bias=False)
    with pytest.raises(ValueError, match='not in the model .1.: decode_head'):
        load_selection(out, model=other)
    with pytest.raises(ValueError, match='computed for the distortion space'):
        load_selection(out, space=dict(distortions=dict(jpeg=[10])))
    record = json.load(open(out))
    record['format_version'] = 99
    save_selection(record, out)
    with pytest.raises(ValueError, match='format_version 99'):
        load_selection(out)
    del record['tensors']
    save_selection(record, out)
    with pytest.raises(ValueError, match=r"lacks \['tensors'\]"):
        load_selection(out)
    with open(out, 'w') as f:
        f.write('{not json')
    with pytest.raises(ValueError, match='not valid JSON'):
        load_selection(out)


@pytest.mark.faults
def test_save_selection_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / 'selection.json'
    save_selection(dict(a=1), str(path))
    monkeypatch.setattr(os, 'replace', lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        save_selection(dict(a=2), str(path))
    # The old file is intact and no temporary file is left behind.
    assert json.loads(path.read_text()) == dict(a=1)
    assert os.listdir(tmp_path) == ['selection.json']


def test_pipeline_gets_exactly_one_distortion(space):
    fixed = dict(
        type='FixedDistortion',
        space=space.to_dict(),
        distortion_type='brightness',
        level=0.2,
    )
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='RandomDistortion', space=space.to_dict()),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs'),
    ]
    out = replace_distortion(pipeline, fixed)
    assert [t['type'] for t in out] == [
        'LoadImageFromFile',
        'FixedDistortion',
        'RandomFlip',
        'PackSegInputs',
    ]
    assert pipeline[1]['type'] == 'RandomDistortion'  # input untouched
    plain = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
    assert [t['type'] for t in replace_distortion(plain, fixed)] == [
        'LoadImageFromFile',
        'FixedDistortion',
        'PackSegInputs',
    ]
    loader = dict(
        batch_size=2,
        dataset=dict(
            type='ConcatDataset',
            datasets=[
                dict(type='A', pipeline=pipeline),
                dict(
                    type='RepeatDataset',
                    times=2,
                    dataset=dict(type='B', pipeline=plain),
                ),
            ],
        ),
    )
    new = with_distortion(loader, fixed)
    a = new['dataset']['datasets'][0]['pipeline']
    b = new['dataset']['datasets'][1]['dataset']['pipeline']
    for p in (a, b):
        assert [t['type'] for t in p].count('FixedDistortion') == 1
        assert 'RandomDistortion' not in [t['type'] for t in p]
    with pytest.raises(ValueError, match='no dataset in the dataloader'):
        with_distortion(dict(dataset=dict(type='A')), fixed)


def test_reselect_equals_scoring_again_at_the_new_budget(
    tiny_model, space, source, tmp_path
):
    first = tmp_path / 'fisher_small.json'
    kwargs = dict(source=source, steps=1, seed=3)
    select(tiny_model, space, 'fisher', budget=0.02, out=str(first), **kwargs)
    again = select(tiny_model, space, 'fisher', budget=0.2, **kwargs)
    out = tmp_path / 'fisher_large.json'
    record = reselect(str(first), budget=0.2, out=str(out))
    assert record['selected'] == again['selected']
    assert set(record['selected']) > set(
        load_selection(str(first))['selected']
    )
    assert record['budget'] == again['budget']
    assert record['tensors'] == again['tensors']
    assert record['excluded_modules'] == again['excluded_modules']
    assert record['scores_from']['path'] == str(first)
    assert record['scores_from']['budget']['asked_fraction'] == 0.02
    assert load_selection(str(out), model=tiny_model, space=space) == (
        json.loads(json.dumps(record))
    )


def test_reselect_keeps_the_knapsack_value_unless_told(
    tiny_model, space, tmp_path
):
    src = tmp_path / 'element.json'
    select(tiny_model, space, budget=0.05, value='element', out=str(src))
    assert reselect(str(src), budget=0.1)['knapsack_value'] == 'element'
    assert reselect(str(src), budget=0.1, value='tensor')[
        'knapsack_value'
    ] == ('tensor')


@pytest.mark.faults
def test_reselect_explains_bad_sources(tiny_model, space, tmp_path):
    src = tmp_path / 'random.json'
    select(tiny_model, space, budget=0.05, out=str(src))
    with pytest.raises(ValueError, match='budget of 8 bytes'):
        reselect(str(src), budget_bytes=8)
    record = json.loads(src.read_text())
    del record['tensors'][0]['score']
    unscored = tmp_path / 'unscored.json'
    unscored.write_text(json.dumps(record))
    with pytest.raises(ValueError, match='no scores to select from again'):
        reselect(str(unscored), budget=0.1)
    with pytest.raises(FileNotFoundError, match='selection file not found'):
        reselect(str(tmp_path / 'absent.json'), budget=0.1)
