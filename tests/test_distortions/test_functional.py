import numpy as np
import pytest

from mmseg_gearnn.distortions import functional as F


def smooth_image(h=48, w=64, c=3, seed=0):
    """A natural-looking image: smooth gradients plus a few soft blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, c), np.float32)
    for ch in range(c):
        img[..., ch] = 60 + 80 * (xx / w) + 40 * (yy / h) + 20 * ch
    for _ in range(4):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 60.0)
        img += blob[..., None] * rng.uniform(-50, 50, size=c)
    return np.clip(img, 0, 255).astype(np.uint8)


# This project's own kernels (the standard corruptions are tested in
# test_corruptions.py).
OWN = sorted(t for t, k in F.KERNELS.items() if k.corruption is None)
# Levels from mild to harsh for each type.
HARSHER = {
    'brightness': [0.8, 0.5, 0.3, 0.1],
    'contrast': [0.8, 0.5, 0.3, 0.1],
    'jpeg': [80, 40, 15, 5],
    'resolution': [0.5, 0.25, 0.125],
    'gaussian_noise': [5, 15, 30, 60],
    'gaussian_blur': [0.5, 1, 2, 4],
}


@pytest.mark.parametrize('name', OWN)
def test_identity_at_neutral_level(name):
    img = smooth_image()
    neutral = F.KERNELS[name].identity
    out = F.distort(img, name, neutral, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == img.shape
    if name == 'jpeg':
        assert F.psnr(img, out) > 40  # lossy even at quality 100
    else:
        np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize('name', sorted(HARSHER))
def test_harsher_levels_lower_psnr(name):
    img = smooth_image(96, 128)
    psnrs = [
        F.psnr(img, F.distort(img, name, lv, np.random.default_rng(1)))
        for lv in HARSHER[name]
    ]
    assert all(a > b for a, b in zip(psnrs, psnrs[1:])), psnrs


@pytest.mark.parametrize('name', OWN)
@pytest.mark.parametrize('shape', [(40, 56, 3), (40, 56), (33, 47, 1)])
def test_dtype_and_shape_preserved(name, shape):
    img = smooth_image(*shape[:2], c=1 if len(shape) == 2 else shape[2])
    img = img.reshape(shape)
    out = F.distort(
        img,
        name,
        HARSHER[name][-1] if name in HARSHER else 1,
        np.random.default_rng(0),
    )
    assert out.dtype == np.uint8
    assert out.shape == img.shape


def test_inputs_not_modified():
    img = smooth_image()
    before = img.copy()
    for name, levels in HARSHER.items():
        F.distort(img, name, levels[-1], np.random.default_rng(0))
    np.testing.assert_array_equal(img, before)


def test_noise_same_seed_same_output():
    img = smooth_image()
    a = F.gaussian_noise(img, 25, np.random.default_rng(7))
    b = F.gaussian_noise(img, 25, np.random.default_rng(7))
    c = F.gaussian_noise(img, 25, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize('name', OWN)
def test_deterministic_kernels(name):
    img = smooth_image()
    level = HARSHER[name][1]
    a = F.distort(img, name, level, np.random.default_rng(3))
    b = F.distort(img, name, level, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    'call, message',
    [
        (lambda im: F.brightness(im, -0.5), 'brightness factor must be >= 0'),
        (lambda im: F.contrast(im, -1), 'contrast factor must be >= 0'),
        (
            lambda im: F.jpeg(im, 0),
            'JPEG quality must be an integer in [1, 100]',
        ),
        (lambda im: F.jpeg(im, 101), 'JPEG quality'),
        (lambda im: F.jpeg(im, 50.5), 'JPEG quality'),
        (lambda im: F.resolution(im, 0), 'resolution scale must be in (0, 1]'),
        (
            lambda im: F.resolution(im, 2.0),
            'resolution scale must be in (0, 1]',
        ),
        (lambda im: F.gaussian_noise(im, -1), 'noise sigma must be >= 0'),
        (lambda im: F.gaussian_blur(im, -1), 'blur sigma must be >= 0'),
        (lambda im: F.brightness(im.astype(np.float32), 1.0), 'must be uint8'),
        (lambda im: F.brightness(im[None], 1.0), 'must have shape'),
        (
            lambda im: F.distort(im, 'fog', 1.0),
            "unknown distortion type 'fog'",
        ),
    ],
)
def test_invalid_arguments_raise(call, message):
    with pytest.raises((ValueError, TypeError, KeyError)) as err:
        call(smooth_image())
    assert message in str(err.value)


def test_brightness_saturates():
    img = np.full((4, 4, 3), 200, np.uint8)
    assert (F.brightness(img, 2.0) == 255).all()
    assert (F.brightness(img, 0.0) == 0).all()


def test_resolution_loses_detail():
    checker = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    out = F.resolution(checker, 0.5)
    # A one-pixel checkerboard averages to grey at half resolution.
    assert abs(float(out.mean()) - 127.5) < 2 and out.std() < 5


def test_kernel_records():
    assert OWN == sorted(HARSHER)
    own = {t: F.KERNELS[t] for t in OWN}
    assert [t for t, k in own.items() if k.integer_levels] == ['jpeg']
    assert [t for t, k in own.items() if k.random] == ['gaussian_noise']
    with pytest.raises(AttributeError):
        F.KERNELS['jpeg'].identity = 90  # frozen
