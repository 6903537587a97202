"""Pure image distortion kernels.

Every kernel takes a ``uint8`` image of shape (H, W) or (H, W, C) and
returns a new ``uint8`` array of the same shape; none modifies its input.
Randomness (noise) comes only from an explicit ``numpy.random.Generator`` so
that the same seed always gives the same output. :data:`KERNELS` also holds
the standard corruptions of :mod:`.corruptions` (types ``'ic_' + name``).
"""

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Union

import cv2
import numpy as np

from ..utils.user_errors import did_you_mean
from .corruptions import (
    CORRUPTIONS,
    check_severity,
    corrupt,
    corruption_type,
)


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray):
        raise TypeError(f'img must be a numpy array, got {type(img).__name__}')
    if img.dtype != np.uint8:
        raise TypeError(f'img must be uint8, got {img.dtype}')
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(
            'img must have shape (H, W) or (H, W, C) with H, W '
            f'> 0, got {img.shape}'
        )


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale intensities by ``factor`` (1.0: unchanged; saturates at 255)."""
    _check_image(img)
    if not factor >= 0:
        raise ValueError(f'brightness factor must be >= 0, got {factor}')
    return _to_uint8(img.astype(np.float32) * factor)


def contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale deviations from the image mean by ``factor`` (1.0: unchanged)."""
    _check_image(img)
    if not factor >= 0:
        raise ValueError(f'contrast factor must be >= 0, got {factor}')
    img = img.astype(np.float32)
    mean = img.mean()
    return _to_uint8(mean + (img - mean) * factor)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` (1-100) and decode again."""
    _check_image(img)
    if int(quality) != quality or not 1 <= quality <= 100:
        raise ValueError(
            f'JPEG quality must be an integer in [1, 100], got {quality}'
        )
    ok, buf = cv2.imencode(
        '.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError(
            f'JPEG encoding failed for an image of shape {img.shape}'
        )
    flag = cv2.IMREAD_GRAYSCALE if img.ndim == 2 else cv2.IMREAD_COLOR
    out = cv2.imdecode(buf, flag)
    if img.ndim == 3 and img.shape[2] != out.shape[2]:
        out = out[..., : img.shape[2]]
    return out


def resolution(img: np.ndarray, scale: float) -> np.ndarray:
    """Downscale by ``scale`` (0, 1] with area averaging, then upscale back
    to the input size bilinearly: the detail of a low-resolution camera at
    the original frame size."""
    _check_image(img)
    if not 0 < scale <= 1:
        raise ValueError(f'resolution scale must be in (0, 1], got {scale}')
    if scale == 1:
        return img.copy()
    h, w = img.shape[:2]
    small = cv2.resize(
        img,
        (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_AREA,
    )
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(img.shape)


def gaussian_noise(
    img: np.ndarray, sigma: float, rng: Optional[np.random.Generator] = None
) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``sigma`` (on the
    0-255 scale), drawn from ``rng`` (a fresh seed-0 generator if None)."""
    _check_image(img)
    if not sigma >= 0:
        raise ValueError(f'noise sigma must be >= 0, got {sigma}')
    if sigma == 0:
        return img.copy()
    rng = np.random.default_rng(0) if rng is None else rng
    noise = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return _to_uint8(img.astype(np.float32) + noise)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Blur with a Gaussian kernel of standard deviation ``sigma`` pixels."""
    _check_image(img)
    if not sigma >= 0:
        raise ValueError(f'blur sigma must be >= 0, got {sigma}')
    if sigma == 0:
        return img.copy()
    # A kernel of about 3 sigma on each side holds 99.7% of the mass.
    ksize = 2 * int(np.ceil(3 * sigma)) + 1
    out = cv2.GaussianBlur(
        img,
        (ksize, ksize),
        sigmaX=sigma,
        sigmaY=sigma,
        borderType=cv2.BORDER_REFLECT_101,
    )
    return out.reshape(img.shape)


def psnr(reference: np.ndarray, img: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    if reference.shape != img.shape:
        raise ValueError(f'shapes differ: {reference.shape} vs {img.shape}')
    mse = np.mean((reference.astype(np.float64) - img.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@dataclass(frozen=True)
class Kernel:
    """A distortion kernel and what its callers need to know about it.

    Attributes:
        fn (Callable): ``fn(img, level)``, or ``fn(img, level, rng)`` when
            ``random``.
        identity (int | float): the neutral level (the image unchanged, up
            to lossy coding).
        random (bool): whether ``fn`` takes ``rng``, to draw random
            numbers from.
        integer_levels (bool): whether its levels are integers only.
        corruption (str, optional): the ``imagecorruptions`` name of a
            standard corruption; None for this project's own kernels.
    """

    fn: Callable
    identity: Union[int, float]
    random: bool = False
    integer_levels: bool = False
    corruption: Optional[str] = None


def _corruption_kernel(
    img: np.ndarray,
    severity: int,
    rng: Optional[np.random.Generator] = None,
    *,
    corruption: str,
) -> np.ndarray:
    """A standard corruption of a BGR image at ``severity``, its seed drawn
    from ``rng`` (seed 0 if None)."""
    _check_image(img)
    seed = 0 if rng is None else int(rng.integers(0, 2**32))
    return corrupt(img, corruption, severity, seed)


KERNELS = {
    'brightness': Kernel(brightness, 1.0),
    'contrast': Kernel(contrast, 1.0),
    'jpeg': Kernel(jpeg, 100, integer_levels=True),
    'resolution': Kernel(resolution, 1.0),
    'gaussian_noise': Kernel(gaussian_noise, 0.0, random=True),
    'gaussian_blur': Kernel(gaussian_blur, 0.0),
    **{
        corruption_type(name): Kernel(
            partial(_corruption_kernel, corruption=name),
            0,
            random=True,
            integer_levels=True,
            corruption=name,
        )
        for name in CORRUPTIONS
    },
}


def _kernel(distortion_type: str) -> Kernel:
    if distortion_type not in KERNELS:
        raise KeyError(
            f'unknown distortion type {distortion_type!r}'
            f'{did_you_mean(distortion_type, KERNELS)}; '
            f'known types: {sorted(KERNELS)}'
        )
    return KERNELS[distortion_type]


def distort(
    img: np.ndarray,
    distortion_type: str,
    level: float,
    rng: Optional[np.random.Generator] = None,
) -> np.ndarray:
    """Apply the kernel named ``distortion_type`` at ``level``."""
    kernel = _kernel(distortion_type)
    if kernel.random:
        return kernel.fn(img, level, rng)
    return kernel.fn(img, level)


def check_level(distortion_type: str, level) -> None:
    """Raises a KeyError for an unknown type and a ValueError for a level
    its kernel rejects, without distorting a real image."""
    kernel = _kernel(distortion_type)
    if kernel.corruption is not None:
        # The library needs 32x32 pixels; a probe of that size is slow.
        check_severity(level)
        return
    probe = np.zeros((2, 2, 3), dtype=np.uint8)
    distort(probe, distortion_type, level, np.random.default_rng(0))
