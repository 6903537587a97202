from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import TRANSFORMS

import mmseg_gearnn  # noqa: F401  (registers the transforms)
from mmseg_gearnn.distortions import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTION_GROUPS,
    CORRUPTIONS,
    HELD_OUT_CORRUPTIONS,
    KERNELS,
    build_space,
    check_level,
    corrupt,
    corruption_of,
    corruption_type,
    distort,
)

CONFIGS = Path(__file__).resolve().parents[2] / 'configs/_base_/distortions'
# The two corruptions that draw from a seed argument, not numpy's global
# random state.
SEEDED = ('impulse_noise', 'glass_blur')


def bgr_image(h=64, w=64, seed=0):
    """Smooth colour gradients with a few hard edges: every corruption
    changes it visibly."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([40 + 3 * xx, 60 + 2 * yy, 200 - 2 * xx], axis=-1)
    img[h // 3 : h // 2, w // 4 : w // 2] = (20, 220, 90)
    rng = np.random.default_rng(seed)
    img += rng.uniform(-5, 5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def reference(bgr, corruption, severity, seed):
    """imagecorruptions.corrupt on the RGB image, under the same seed."""
    library = pytest.importorskip('imagecorruptions')
    np.random.seed(seed)
    kwargs = dict(seed=seed) if corruption in SEEDED else {}
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    out = library.corrupt(
        rgb, severity=severity, corruption_name=corruption, **kwargs
    )
    return out[..., ::-1]


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmseg')


def test_names_and_groups_are_the_library_s():
    library = pytest.importorskip('imagecorruptions')
    names = library.get_corruption_names
    assert list(BENCHMARK_CORRUPTIONS) == names('common')
    assert list(HELD_OUT_CORRUPTIONS) == names('validation')
    assert list(CORRUPTIONS) == names('all')
    for group, members in CORRUPTION_GROUPS.items():
        assert list(members) == names(group)


@pytest.mark.parametrize('corruption', CORRUPTIONS)
def test_equals_imagecorruptions(corruption):
    pytest.importorskip('imagecorruptions')
    img = bgr_image()
    expected = reference(img, corruption, 3, seed=5)
    out = corrupt(img, corruption, 3, seed=5)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out, img)
    # In the distortion space's vocabulary: the kernel draws its seed
    # from the generator it is given.
    seed = int(np.random.default_rng(1).integers(0, 2**32))
    np.testing.assert_array_equal(
        distort(img, corruption_type(corruption), 3, np.random.default_rng(1)),
        reference(img, corruption, 3, seed),
    )


def test_seed_decides_and_global_state_is_kept():
    pytest.importorskip('imagecorruptions')
    img = bgr_image()
    np.random.seed(11)
    before = np.random.get_state()[1].copy()
    a = corrupt(img, 'gaussian_noise', 2, seed=1)
    assert np.array_equal(np.random.get_state()[1], before)
    assert np.array_equal(a, corrupt(img, 'gaussian_noise', 2, seed=1))
    assert not np.array_equal(a, corrupt(img, 'gaussian_noise', 2, seed=2))
    # The seeded ones too, which would draw fresh entropy without a seed.
    for name in SEEDED:
        assert np.array_equal(
            corrupt(img, name, 1, seed=3), corrupt(img, name, 1, seed=3)
        )


def test_channel_orders_and_grey_images():
    pytest.importorskip('imagecorruptions')
    img = bgr_image(48, 80)
    bgr = corrupt(img, 'frost', 2, seed=4)
    rgb = corrupt(img[..., ::-1].copy(), 'frost', 2, 4, channel_order='rgb')
    np.testing.assert_array_equal(bgr, rgb[..., ::-1])
    grey = img[..., 1]
    for shape in (grey.shape, grey.shape + (1,)):
        out = corrupt(grey.reshape(shape), 'contrast', 4)
        assert out.shape == shape and out.dtype == np.uint8
        assert out.std() < grey.std()


def test_severity_zero_is_identity():
    img = bgr_image()
    out = corrupt(img, 'snow', 0)
    np.testing.assert_array_equal(out, img)
    assert out is not img


@pytest.mark.parametrize(
    'args, error, message',
    [
        ((bgr_image(), 'fog', 6), ValueError, 'integer in \\[0, 5\\]'),
        ((bgr_image(), 'fog', 2.5), ValueError, 'integer in \\[0, 5\\]'),
        ((bgr_image(), 'fog', True), ValueError, 'integer in \\[0, 5\\]'),
        ((bgr_image(), 'rain', 1), ValueError, "unknown corruption 'rain'"),
        ((bgr_image(31, 64), 'fog', 1), ValueError, 'at least 32x32'),
        ((np.zeros((40, 40, 4), np.uint8), 'fog', 1), ValueError, 'C 1'),
        ((bgr_image().astype(float), 'fog', 1), TypeError, 'uint8'),
    ],
)
def test_bad_input(args, error, message):
    with pytest.raises(error, match=message):
        corrupt(*args)


def test_kernel_records():
    for name in CORRUPTIONS:
        kernel = KERNELS[corruption_type(name)]
        assert kernel.corruption == name and kernel.identity == 0
        assert kernel.integer_levels and kernel.random
        assert corruption_of(corruption_type(name)) == name
    assert corruption_of('gaussian_noise') is None  # the project's own
    assert corruption_of('ic_rain') is None
    check_level('ic_fog', 5)
    with pytest.raises(ValueError, match='integer in'):
        check_level('ic_fog', 7)


def test_space_configs():
    benchmark = build_space(
        Config.fromfile(CONFIGS / 'corruptions_benchmark.py').distortion_space
    )
    assert benchmark.types == [
        corruption_type(c) for c in BENCHMARK_CORRUPTIONS
    ]
    assert all(benchmark.levels(t) == [1, 2, 3, 4, 5] for t in benchmark.types)
    assert benchmark.num_gears == 1 + 15 * 5
    assert benchmark.gear_id('ic_fog', 3) == 1 + 9 * 5 + 2
    held_out = build_space(
        Config.fromfile(CONFIGS / 'corruptions_held_out.py').distortion_space
    )
    assert held_out.types == [corruption_type(c) for c in HELD_OUT_CORRUPTIONS]
    assert held_out.num_gears == 1 + 4 * 5


def test_transforms_apply_corruptions():
    pytest.importorskip('imagecorruptions')
    space = dict(distortions=dict(ic_shot_noise=[1, 2], ic_pixelate=[3]))
    img = bgr_image()
    fixed = TRANSFORMS.build(
        dict(
            type='FixedDistortion',
            space=space,
            distortion_type='ic_shot_noise',
            level=2,
        )
    )
    out = fixed(dict(img=img.copy()))
    assert out['distortion'] == dict(type='ic_shot_noise', level=2, gear=2)
    assert out['img'].shape == img.shape and not np.array_equal(
        out['img'], img
    )
    # A request's seed decides the image, whatever the global state.
    requested = TRANSFORMS.build(dict(type='RequestedDistortion', space=space))
    request = dict(type='ic_shot_noise', level=1, seed=9)
    images = []
    for global_seed in (0, 1):
        np.random.seed(global_seed)
        results = dict(img=img.copy(), distortion_request=dict(request))
        images.append(requested(results)['img'])
    np.testing.assert_array_equal(images[0], images[1])
    np.testing.assert_array_equal(
        images[0], reference(img, 'shot_noise', 1, seed_of(9))
    )
    compound = TRANSFORMS.build(
        dict(
            type='CompoundDistortion',
            components=[('ic_pixelate', 3), ('ic_contrast', 2)],
        )
    )
    out = compound(dict(img=img.copy()))
    assert out['distortion']['type'] == 'ic_pixelate+ic_contrast'
    with pytest.raises(ValueError, match='integer in'):
        TRANSFORMS.build(
            dict(type='CompoundDistortion', components=[('ic_fog', 9)])
        )


def seed_of(request_seed):
    """The library seed of a request's seed (the kernel draws it)."""
    rng = np.random.default_rng(request_seed)
    return int(rng.integers(0, 2**32))
