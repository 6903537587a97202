"""Levels between gears (bracketing gears and their weights) and compound
distortions (several applied in order, all recorded)."""

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import TRANSFORMS

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.distortions import (
    DistortionSpace,
    brightness,
    compound_record,
    gaussian_noise,
    jpeg,
)

# jpeg lists its levels decreasing, noise increasing.
SPACE = DistortionSpace(
    dict(
        jpeg=[20, 10, 5, 3, 1],
        gaussian_noise=[10, 20, 30],
        brightness=[0.4, 0.2],
    )
)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmseg')


def image(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def weights(pairs):
    return {g: pytest.approx(w) for g, w in pairs}


@pytest.mark.parametrize(
    'dtype, level',
    [('jpeg', 20), ('jpeg', 3), ('gaussian_noise', 20), ('brightness', 0.2)],
)
def test_a_listed_level_is_its_gear_alone(dtype, level):
    assert SPACE.bracketing_gears(dtype, level) == [
        (SPACE.gear_id(dtype, level), 1.0)
    ]
    # Up to float rounding, like resolve_level.
    assert SPACE.bracketing_gears(dtype, level * (1 + 1e-9)) == [
        (SPACE.gear_id(dtype, level), 1.0)
    ]


def test_decreasing_levels_are_bracketed_linearly():
    # jpeg 8 lies between 10 (gear 2) and 5 (gear 3), 3/5 of the way to 5.
    pairs = SPACE.bracketing_gears('jpeg', 8)
    assert [g for g, _ in pairs] == [2, 3]
    assert weights(pairs) == {2: 0.6, 3: 0.4}
    assert weights(SPACE.bracketing_gears('jpeg', 4)) == {3: 0.5, 4: 0.5}
    assert weights(SPACE.bracketing_gears('jpeg', 19)) == {1: 0.9, 2: 0.1}


def test_increasing_levels_are_bracketed_linearly():
    gear_10, gear_20, gear_30 = (
        SPACE.gear_id('gaussian_noise', lv) for lv in (10, 20, 30)
    )
    assert weights(SPACE.bracketing_gears('gaussian_noise', 12.5)) == {
        gear_10: 0.75,
        gear_20: 0.25,
    }
    assert weights(SPACE.bracketing_gears('gaussian_noise', 29)) == {
        gear_20: 0.1,
        gear_30: 0.9,
    }
    gear_04, gear_02 = (SPACE.gear_id('brightness', lv) for lv in (0.4, 0.2))
    assert weights(SPACE.bracketing_gears('brightness', 0.25)) == {
        gear_04: 0.25,
        gear_02: 0.75,
    }


@pytest.mark.parametrize('level, end', [(30, 20), (100, 20), (0.5, 1), (1, 1)])
def test_outside_the_range_is_the_nearest_end(level, end):
    assert SPACE.bracketing_gears('jpeg', level) == [
        (SPACE.gear_id('jpeg', end), 1.0)
    ]


def test_weights_sum_to_one_and_prefer_the_closer_level():
    for level in np.linspace(1.1, 19.9, 37):
        pairs = SPACE.bracketing_gears('jpeg', float(level))
        assert sum(w for _, w in pairs) == pytest.approx(1.0)
        if len(pairs) == 2:
            (ga, wa), (gb, wb) = pairs
            da = abs(SPACE.level_of(ga)[1] - level)
            db = abs(SPACE.level_of(gb)[1] - level)
            assert (wa > wb) == (da < db)


def test_bracketing_ignores_snap_and_checks_the_type():
    strict = DistortionSpace(dict(jpeg=[20, 10]), snap='error')
    assert weights(strict.bracketing_gears('jpeg', 15)) == {1: 0.5, 2: 0.5}
    assert strict.bracketing_gears('clean', None) == [(0, 1.0)]
    with pytest.raises(ValueError, match='not in the distortion space'):
        strict.bracketing_gears('brightness', 0.3)
    assert strict.listed_level('jpeg', 15) is None
    assert strict.listed_level('jpeg', 10.0) == 10


def test_compound_applies_every_kernel_in_order_and_records_them():
    t = TRANSFORMS.build(
        dict(
            type='CompoundDistortion',
            components=[
                dict(type='brightness', level=0.1),
                ('jpeg', 5),
            ],
        )
    )
    img = image()
    out = t(dict(img=img.copy()))
    np.testing.assert_array_equal(out['img'], jpeg(brightness(img, 0.1), 5))
    # The order matters: the other order is another image.
    assert not np.array_equal(out['img'], brightness(jpeg(img, 5), 0.1))
    assert out['distortion'] == dict(
        type='brightness+jpeg',
        level='0.1+5',
        gear=None,
        components=[
            dict(type='brightness', level=0.1),
            dict(type='jpeg', level=5),
        ],
    )


def test_compound_noise_is_seeded_like_the_other_transforms():
    t = TRANSFORMS.build(
        dict(
            type='CompoundDistortion',
            components=[('gaussian_noise', 20), ('jpeg', 10)],
        )
    )
    img = image(1)
    np.random.seed(3)
    first = t(dict(img=img.copy()))['img']
    np.random.seed(3)
    seed = int(np.random.randint(0, 2**31 - 1))
    expected = jpeg(gaussian_noise(img, 20, np.random.default_rng(seed)), 10)
    np.testing.assert_array_equal(first, expected)


@pytest.mark.faults
def test_compound_refuses_bad_components():
    with pytest.raises(ValueError, match='unknown distortion type'):
        TRANSFORMS.build(
            dict(type='CompoundDistortion', components=[('fog', 1)])
        )
    with pytest.raises(ValueError, match='JPEG quality'):
        TRANSFORMS.build(
            dict(type='CompoundDistortion', components=[('jpeg', 0)])
        )
    with pytest.raises(ValueError, match='at least one component'):
        compound_record([])
    with pytest.raises(ValueError, match='needs a level'):
        compound_record([dict(type='jpeg')])


def test_requested_compound_and_gearless_records():
    t = TRANSFORMS.build(
        dict(type='RequestedDistortion', space=SPACE, record_gear=False)
    )
    img = image(2)
    out = t(
        dict(
            img=img.copy(),
            distortion_request=dict(
                components=[
                    dict(type='brightness', level=0.15),
                    dict(type='jpeg', level=7),
                ]
            ),
        )
    )
    np.testing.assert_array_equal(out['img'], jpeg(brightness(img, 0.15), 7))
    assert out['distortion']['components'][1] == dict(type='jpeg', level=7)
    out = t(
        dict(img=img.copy(), distortion_request=dict(type='jpeg', level=10))
    )
    assert out['distortion'] == dict(type='jpeg', level=10, gear=None)
    fixed = TRANSFORMS.build(
        dict(
            type='FixedDistortion',
            space=SPACE,
            distortion_type='jpeg',
            level=10,
        )
    )
    assert fixed(dict(img=img.copy()))['distortion']['gear'] == 2
