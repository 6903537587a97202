from collections import Counter

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import TRANSFORMS

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.distortions import build_space, psnr

SPACE = dict(
    distortions=dict(jpeg=[40, 10], brightness=[0.5, 0.2], gaussian_noise=[30])
)
SPACE_REPR = (
    "DistortionSpace(distortions={'jpeg': [40, 10], 'brightness': "
    "[0.5, 0.2], 'gaussian_noise': [30]}, snap='error')"
)


def make_results(seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    seg = rng.integers(0, 5, (24, 32), dtype=np.uint8)
    return dict(img=img, gt_seg_map=seg, seg_fields=['gt_seg_map'])


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmseg')


def build(cfg):
    return TRANSFORMS.build(cfg)


def test_fixed_distortion_records_and_applies():
    t = build(
        dict(
            type='FixedDistortion',
            space=SPACE,
            distortion_type='brightness',
            level=0.2,
        )
    )
    results = make_results()
    img, seg = results['img'].copy(), results['gt_seg_map'].copy()
    out = t(results)
    assert out['distortion'] == dict(type='brightness', level=0.2, gear=4)
    assert psnr(img, out['img']) < 20
    np.testing.assert_array_equal(out['gt_seg_map'], seg)
    assert repr(t) == (
        f'FixedDistortion(space={SPACE_REPR}, '
        "distortion_type='brightness', level=0.2)"
    )


def test_fixed_clean_is_identity():
    t = build(
        dict(type='FixedDistortion', space=SPACE, distortion_type='clean')
    )
    results = make_results()
    img = results['img'].copy()
    out = t(results)
    np.testing.assert_array_equal(out['img'], img)
    assert out['distortion'] == dict(type='clean', level=None, gear=0)


@pytest.mark.faults
def test_fixed_level_outside_space():
    with pytest.raises(ValueError, match=r'valid levels: \[40, 10\]'):
        build(
            dict(
                type='FixedDistortion',
                space=SPACE,
                distortion_type='jpeg',
                level=20,
            )
        )
    snapped = build(
        dict(
            type='FixedDistortion',
            space=dict(SPACE, snap='nearest'),
            distortion_type='jpeg',
            level=20,
        )
    )
    assert snapped.level == 10


def test_random_distortion_covers_space_and_clean_prob():
    t = build(dict(type='RandomDistortion', space=SPACE, clean_prob=0.25))
    np.random.seed(0)
    counts = Counter()
    draws = 2000
    for i in range(draws):
        d = t(make_results(i % 7))['distortion']
        counts[(d['type'], d['level'], d['gear'])] += 1
    expected = {(tp, lv, g) for g, tp, lv in t.space.gears()}
    assert set(counts) == expected
    clean_share = counts[('clean', None, 0)] / draws
    assert abs(clean_share - 0.25) < 0.04
    # The rest is spread evenly over types, then over levels.
    noise_share = counts[('gaussian_noise', 30, 5)] / draws
    assert abs(noise_share - 0.75 / 3) < 0.04
    assert repr(t) == (
        f'RandomDistortion(space={SPACE_REPR}, '
        'clean_prob=0.25, types=None, draw_every=1)'
    )


def test_random_distortion_types_subset_and_errors():
    t = build(
        dict(
            type='RandomDistortion',
            space=SPACE,
            clean_prob=0.0,
            types=['jpeg'],
        )
    )
    np.random.seed(1)
    types = {t(make_results())['distortion']['type'] for _ in range(50)}
    assert types == {'jpeg'}
    with pytest.raises(ValueError, match='clean_prob must be in'):
        build(dict(type='RandomDistortion', space=SPACE, clean_prob=1.5))
    with pytest.raises(ValueError, match="'resolution' is not in"):
        build(dict(type='RandomDistortion', space=SPACE, types=['resolution']))


def test_random_distortion_same_seed_same_output():
    t = build(
        dict(
            type='RandomDistortion',
            space=SPACE,
            clean_prob=0.0,
            types=['gaussian_noise'],
        )
    )
    np.random.seed(3)
    a = t(make_results())['img']
    np.random.seed(3)
    b = t(make_results())['img']
    np.random.seed(4)
    c = t(make_results())['img']
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_requested_distortion():
    t = build(dict(type='RequestedDistortion', space=SPACE))
    results = make_results()
    results['distortion_request'] = dict(type='jpeg', level=10)
    out = t(results)
    assert out['distortion'] == dict(type='jpeg', level=10, gear=2)
    assert 'distortion_request' not in out
    assert t(make_results())['distortion']['gear'] == 0
    bad = make_results()
    bad['distortion_request'] = dict(type='jpeg', level=11)
    with pytest.raises(ValueError, match='level 11 is not in'):
        t(bad)


def test_distortion_reaches_data_sample_metainfo():
    pipeline = [
        dict(type='RandomDistortion', space=SPACE, clean_prob=0.0),
        dict(
            type='PackSegInputs',
            meta_keys=('img_shape', 'ori_shape', 'distortion'),
        ),
    ]
    from mmcv.transforms import Compose

    compose = Compose([build(c) for c in pipeline])
    results = make_results()
    results.update(img_shape=(24, 32), ori_shape=(24, 32))
    packed = compose(results)
    distortion = packed['data_samples'].metainfo['distortion']
    assert distortion['gear'] > 0
    assert distortion['gear'] == build_space(SPACE).gear_id(
        distortion['type'], distortion['level']
    )


def test_draw_every_keeps_one_gear_per_block():
    t = build(
        dict(
            type='RandomDistortion', space=SPACE, clean_prob=0.0, draw_every=4
        )
    )
    np.random.seed(0)
    gears = [t(make_results())['distortion']['gear'] for _ in range(40)]
    blocks = [gears[i : i + 4] for i in range(0, 40, 4)]
    assert all(len(set(b)) == 1 for b in blocks)
    assert len({b[0] for b in blocks}) > 1
    with pytest.raises(ValueError, match='draw_every must be a positive'):
        build(dict(type='RandomDistortion', space=SPACE, draw_every=0))
