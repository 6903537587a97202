import pytest

from mmseg_gearnn.distortions import DistortionSpace, build_space

SPACE = dict(distortions=dict(jpeg=[40, 20, 10], brightness=[0.5, 0.2]))


def test_gear_table_order():
    space = build_space(SPACE)
    assert space.num_gears == 6
    assert space.gears() == [
        (0, 'clean', None),
        (1, 'jpeg', 40),
        (2, 'jpeg', 20),
        (3, 'jpeg', 10),
        (4, 'brightness', 0.5),
        (5, 'brightness', 0.2),
    ]
    assert space.gear_id('clean') == 0
    assert space.gear_id('brightness', 0.2) == 5
    assert space.gear_id('brightness', 0.2000000001) == 5
    assert space.level_of(3) == ('jpeg', 10)
    assert space.types == ['jpeg', 'brightness']


@pytest.mark.faults
def test_level_outside_space_names_valid_levels():
    space = build_space(SPACE)
    with pytest.raises(ValueError) as err:
        space.gear_id('jpeg', 30)
    assert 'level 30' in str(err.value)
    assert '[40, 20, 10]' in str(err.value)


def test_nearest_snapping():
    space = build_space(dict(SPACE, snap='nearest'))
    assert space.gear_id('jpeg', 30) in (1, 2)
    assert space.gear_id('jpeg', 12) == 3
    assert space.record('brightness', 0.3) == dict(
        type='brightness', level=0.2, gear=5
    )


@pytest.mark.parametrize(
    'distortions, message',
    [
        ({}, 'the distortion space is empty'),
        (dict(fog=[1]), "unknown distortion type 'fog'"),
        (dict(jpeg=[]), "'jpeg' has no levels"),
        (dict(jpeg=[10, 10]), 'lists a level twice'),
    ],
)
def test_invalid_space(distortions, message):
    with pytest.raises(ValueError, match=message):
        DistortionSpace(distortions)


@pytest.mark.faults
def test_unknown_type_and_gear():
    space = build_space(SPACE)
    with pytest.raises(ValueError, match="'resolution' is not in the"):
        space.gear_id('resolution', 0.5)
    with pytest.raises(ValueError, match=r'valid gears are 0\.\.5'):
        space.level_of(6)
    with pytest.raises(ValueError, match='outside the gear table'):
        space.level_of(-1)


def test_round_trip_and_equality():
    space = build_space(SPACE)
    assert build_space(space.to_dict()) == space
    assert build_space(space) is space
    assert space != build_space(dict(distortions=dict(jpeg=[40])))
    with pytest.raises(ValueError, match="needs a 'distortions' key"):
        build_space(dict(levels=[1]))
