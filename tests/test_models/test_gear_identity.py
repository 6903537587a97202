"""A gear's identity is its (type, level), not its position: checkpoints,
gears files and selection files load into a model whose space lists the
same gears in another order (a dumped config sorts the types), and a file
that lacks a gear of the model is refused with both tables named."""

import logging

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_checkpoint
from mmseg.registry import MODELS
from toys import tiny_segmentor, write_selection

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.distortions import DistortionSpace
from mmseg_gearnn.distortions.space import (
    decode_gear_table,
    encode_gear_table,
)
from mmseg_gearnn.models.adaptor_tensors import bn_names
from mmseg_gearnn.models.gear_bank import GearBank

ORDER = dict(jpeg=[40, 10], brightness=[0.3])
# The same gears as ORDER, types sorted and levels in another order.
PERMUTED = dict(brightness=[0.3], jpeg=[10, 40])
LACKING = dict(brightness=[0.3], jpeg=[10, 20])


def build(distortions, adaptor='bn'):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(
        ConfigDict(
            type='GearNNSegmentor',
            segmentor=tiny_segmentor(),
            space=dict(distortions=distortions),
            adaptor=adaptor,
        )
    )
    model.init_weights()
    return model


def marked(model):
    """Gives every gear distinct tensors: gear g's floats + 10 * g."""
    with torch.no_grad():
        for gear in range(1, model.gear_bank.num_gears):
            for t in model.gear_bank.tensors(gear).values():
                if t.is_floating_point():
                    t.add_(10.0 * gear)
    return model


def assert_same_gears(loaded, source):
    """Every gear of ``loaded`` holds the tensors of the gear of the same
    (type, level) in ``source``."""
    for gear in range(1, loaded.gear_bank.num_gears):
        theirs = source.space.gear_id(*loaded.space.level_of(gear))
        ours_t = loaded.gear_bank.tensors(gear)
        theirs_t = source.gear_bank.tensors(theirs)
        assert ours_t.keys() == theirs_t.keys()
        for name in ours_t:
            assert torch.equal(ours_t[name], theirs_t[name]), (gear, name)


def test_gear_table_and_map():
    space = DistortionSpace(ORDER)
    assert space.gear_table() == [
        ['clean', None],
        ['jpeg', 40],
        ['jpeg', 10],
        ['brightness', 0.3],
    ]
    permuted = DistortionSpace(PERMUTED)
    # permuted gear -> its id in ORDER's table
    assert permuted.gear_map(space.gear_table()) == {0: 0, 1: 3, 2: 2, 3: 1}
    assert permuted.same_gears(space) and space.same_gears(permuted)
    assert not DistortionSpace(LACKING).same_gears(space)
    assert not DistortionSpace(dict(jpeg=[40, 10])).same_gears(space)


def test_checkpoint_with_permuted_gear_table_loads_into_the_right_gears():
    source = marked(build(ORDER))
    state = source.state_dict()
    assert decode_gear_table(state['_extra_state']) == (
        source.space.gear_table()
    )
    model = build(PERMUTED)
    model.load_state_dict(state)
    assert_same_gears(model, source)


def test_mmengine_checkpoint_file_with_permuted_table(tmp_path):
    """Through a file and mmengine's load_checkpoint (the Runner's path),
    weights-only."""
    source = marked(build(ORDER))
    path = str(tmp_path / 'gears_model.pth')
    torch.save(dict(state_dict=source.state_dict()), path)
    model = build(PERMUTED)
    load_checkpoint(model, path, map_location='cpu', strict=True)
    assert_same_gears(model, source)
    # Predictions per (type, level) agree.
    model.eval(), source.eval()
    x = torch.rand(1, 3, 32, 32)
    for gear in range(1, 4):
        source.switch_gear(source.space.gear_id(*model.space.level_of(gear)))
        model.switch_gear(gear)
        with torch.no_grad():
            assert torch.equal(
                model.segmentor._forward(x), source.segmentor._forward(x)
            )


def test_every_state_dict_value_is_a_tensor():
    """mmengine broadcasts every value of state_dict() as a tensor when it
    initialises a distributed run; the gear table is one too."""
    state = build(ORDER).state_dict()
    assert '_extra_state' in state
    others = {k: type(v).__name__ for k, v in state.items()}
    assert all(isinstance(v, torch.Tensor) for v in state.values()), others
    table = state['_extra_state']
    assert table.dtype == torch.uint8 and table.dim() == 1


def test_gear_table_encoding_round_trip():
    table = DistortionSpace(ORDER).gear_table()
    encoded = encode_gear_table(table)
    assert decode_gear_table(encoded) == table
    # Integer levels stay integers, float levels floats, through JSON.
    assert [type(lv) for _, lv in decode_gear_table(encoded)] == [
        type(None),
        int,
        int,
        float,
    ]
    assert decode_gear_table(None) is None
    assert decode_gear_table(dict(other=1)) is None


def test_checkpoint_with_the_earlier_dict_gear_table_loads(tmp_path):
    """Checkpoints written while the gear table was a dict still map their
    gears by (type, level), also through a weights-only file load."""
    source = marked(build(ORDER))
    state = source.state_dict()
    state['_extra_state'] = dict(gear_table=source.space.gear_table())
    path = str(tmp_path / 'dict_table.pth')
    torch.save(dict(state_dict=state), path)
    model = build(PERMUTED)
    load_checkpoint(model, path, map_location='cpu', strict=True)
    assert_same_gears(model, source)
    assert isinstance(model.state_dict()['_extra_state'], torch.Tensor)


@pytest.mark.faults
@pytest.mark.parametrize(
    'extra, problem',
    [
        ('clean', 'is a str, not the 1-D uint8 tensor'),
        (torch.zeros(3), 'is a torch.float32 tensor of shape (3,)'),
        (torch.tensor([255, 0], dtype=torch.uint8), 'not readable JSON'),
        (
            torch.tensor(list(b'{"format":"x"}'), dtype=torch.uint8),
            "not of format 'gearnn.gear_table'",
        ),
        (
            torch.tensor(
                list(b'{"format":"gearnn.gear_table","version":2}'),
                dtype=torch.uint8,
            ),
            'format version 2; this version of mmseg_gearnn reads version 1',
        ),
        (dict(gear_table=[['jpeg']]), 'not a list of [type, level] pairs'),
    ],
)
def test_unreadable_gear_table_is_refused_naming_the_problem(extra, problem):
    state = build(ORDER).state_dict()
    state['_extra_state'] = extra
    model = build(ORDER)
    with pytest.raises(ValueError) as err:
        model.load_state_dict(state)
    assert str(err.value).startswith("the checkpoint's _extra_state: ")
    assert problem in str(err.value)


@pytest.mark.faults
def test_checkpoint_lacking_a_gear_is_refused_naming_both_tables():
    state = marked(build(ORDER)).state_dict()
    model = build(LACKING)
    with pytest.raises(ValueError) as err:
        model.load_state_dict(state)
    message = str(err.value)
    assert 'lacks 1 gear(s) of this model (jpeg@20)' in message
    assert 'table: 0:clean 1:jpeg@40 2:jpeg@10 3:brightness@0.3' in message
    assert 'model: 0:clean 1:brightness@0.3 2:jpeg@10 3:jpeg@20' in message


def test_checkpoint_with_more_gears_loads_the_model_gears():
    source = marked(build(ORDER))
    model = build(dict(jpeg=[10]))
    model.load_state_dict(source.state_dict())
    assert_same_gears(model, source)


def test_gears_file_with_permuted_table_loads_into_the_right_gears(tmp_path):
    source = marked(build(ORDER))
    path = str(tmp_path / 'gears.pth')
    source.save_gears(path)
    assert torch.load(path, weights_only=True)['gear_table'] == (
        source.space.gear_table()
    )
    model = build(PERMUTED)
    model.load_gears(path)
    assert_same_gears(model, source)


@pytest.mark.faults
def test_gears_file_lacking_a_gear_is_refused_naming_both_tables(tmp_path):
    path = str(tmp_path / 'gears.pth')
    marked(build(ORDER)).save_gears(path)
    with pytest.raises(ValueError) as err:
        build(LACKING).load_gears(path)
    message = str(err.value)
    assert 'does not match this model' in message
    assert 'table: 0:clean 1:jpeg@40 2:jpeg@10 3:brightness@0.3' in message
    assert 'model: 0:clean 1:brightness@0.3 2:jpeg@10 3:jpeg@20' in message


def test_selection_file_of_the_same_gears_in_another_order(tmp_path):
    init_default_scope('mmseg')
    bare = MODELS.build(ConfigDict(tiny_segmentor()))
    names = bn_names(bare)[:4]
    path = write_selection(
        tmp_path / 'selection.json',
        names,
        dict(distortions=ORDER, snap='error'),
        bare,
    )
    model = build(PERMUTED, adaptor=path)
    assert set(names) <= set(model.adaptor_names)
    with pytest.raises(ValueError, match='another distortion space'):
        build(LACKING, adaptor=path)


def test_checkpoint_of_another_adaptor_brings_its_adaptor():
    """A config naming another selection than the checkpoint's gears were
    trained with: the checkpoint's adaptor is used (it used to fail with
    'N tensor(s) missing')."""
    source = marked(build(ORDER))  # adaptor='bn'
    names = bn_names(source.segmentor)[:2]
    model = build(ORDER, adaptor=names)
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        model.load_state_dict(source.state_dict())
    finally:
        logger.removeHandler(handler)
    assert set(model.adaptor_names) == set(source.adaptor_names)
    assert_same_gears(model, source)
    assert any(
        "checkpoint's adaptor is used" in r.getMessage() for r in records
    )


@pytest.mark.faults
def test_gear_ids_out_of_range_one_message():
    space = DistortionSpace(ORDER)
    bank = GearBank(torch.nn.Linear(2, 2), ['weight'], space.num_gears)
    for check in (space.level_of, bank.check_gear):
        with pytest.raises(ValueError, match=r'valid gears are 0\.\.3'):
            check(4)
