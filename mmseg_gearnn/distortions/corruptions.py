"""The standard corruptions of Hendrycks & Dietterich (ImageNet-C).

The 15 benchmark corruptions in four groups (noise, blur, weather, digital)
and the 4 held-out ones, each at severities 1-5, as used for segmentation
by Kamann & Rother and for detection by Michaelis et al. The images come
from the ``imagecorruptions`` package itself (install the maintained fork:
``pip install 'mmseg_gearnn[corruptions]'``), never from a re-implementation,
so that numbers can be set beside published ones.

In a distortion space each corruption is the type ``'ic_' + name`` (e.g.
``ic_gaussian_noise``) with integer levels, its severities: the prefix keeps
them apart from this project's own kernels of the same name (whose
``brightness``, for one, darkens, while the corruption brightens).
"""

import inspect
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

# Prefix of a corruption's distortion type.
CORRUPTION_PREFIX = 'ic_'
SEVERITIES = (1, 2, 3, 4, 5)
# The benchmark corruptions by group, in imagecorruptions' order.
CORRUPTION_GROUPS: Dict[str, Tuple[str, ...]] = {
    'noise': ('gaussian_noise', 'shot_noise', 'impulse_noise'),
    'blur': ('defocus_blur', 'glass_blur', 'motion_blur', 'zoom_blur'),
    'weather': ('snow', 'frost', 'fog', 'brightness'),
    'digital': (
        'contrast',
        'elastic_transform',
        'pixelate',
        'jpeg_compression',
    ),
}
BENCHMARK_CORRUPTIONS: Tuple[str, ...] = tuple(
    name for group in CORRUPTION_GROUPS.values() for name in group
)
# Kept out of training and model selection in the literature.
HELD_OUT_CORRUPTIONS: Tuple[str, ...] = (
    'speckle_noise',
    'gaussian_blur',
    'spatter',
    'saturate',
)
CORRUPTIONS: Tuple[str, ...] = BENCHMARK_CORRUPTIONS + HELD_OUT_CORRUPTIONS


def corruption_type(corruption: str) -> str:
    """The distortion type of a corruption, e.g. ``'ic_frost'``."""
    if corruption not in CORRUPTIONS:
        raise ValueError(
            f'unknown corruption {corruption!r}; known: {list(CORRUPTIONS)}'
        )
    return CORRUPTION_PREFIX + corruption


def corruption_of(distortion_type: str) -> Optional[str]:
    """The corruption named by a distortion type (``'ic_frost'`` ->
    ``'frost'``), or None for a type that is no corruption."""
    if not distortion_type.startswith(CORRUPTION_PREFIX):
        return None
    name = distortion_type[len(CORRUPTION_PREFIX) :]
    return name if name in CORRUPTIONS else None


def _library():
    try:
        import imagecorruptions
    except ImportError as e:
        raise ImportError(
            'the standard corruptions need the imagecorruptions package: '
            "pip install 'mmseg_gearnn[corruptions]' (imagecorruptions-imaug, "
            'the maintained fork that works with numpy 2)'
        ) from e
    return imagecorruptions


def check_severity(severity) -> None:
    """Raises a ValueError unless ``severity`` is an integer in [0, 5]."""
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, float, np.integer, np.floating))
        or int(severity) != severity
        or not 0 <= severity <= 5
    ):
        raise ValueError(
            'a corruption severity must be an integer in [0, 5] (0: '
            f'unchanged), got {severity!r}'
        )


def corrupt(
    img: np.ndarray,
    corruption: str,
    severity: int,
    seed: int = 0,
    channel_order: str = 'bgr',
) -> np.ndarray:
    """``imagecorruptions.corrupt`` of a uint8 image, reproducibly.

    The library draws from numpy's global random state, and its
    ``impulse_noise`` and ``glass_blur`` from a seed argument (fresh entropy
    without one). This seeds both with ``seed`` and restores the global
    state afterwards, so the result depends only on (image, corruption,
    severity, seed) and equals, for an RGB image::

        np.random.seed(seed)
        imagecorruptions.corrupt(img, severity, corruption, seed=seed)

    (``seed=`` only for the two corruptions that take it). The global
    state is shared by the threads of a process: do not corrupt from
    several threads at once.

    Args:
        img (np.ndarray): uint8, (H, W) or (H, W, C) with C 1 or 3, H and
            W at least 32 (the library's limits).
        corruption (str): one of :data:`CORRUPTIONS`.
        severity (int): 1 (mild) to 5 (harsh); 0 returns a copy.
        seed (int): the random seed, in [0, 2**32).
        channel_order (str): ``'bgr'`` (as mmcv loads images) or ``'rgb'``
            (as the library expects) for a 3-channel image.

    Returns:
        np.ndarray: uint8, the shape and channel order of ``img``.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(
            'img must be a uint8 numpy array, got '
            f'{getattr(img, "dtype", type(img).__name__)}'
        )
    channels = 1 if img.ndim == 2 else img.shape[-1]
    if img.ndim not in (2, 3) or channels not in (1, 3):
        raise ValueError(
            'a corrupted image must have shape (H, W) or (H, W, C) with C 1 '
            f'or 3, got {img.shape}'
        )
    if min(img.shape[:2]) < 32:
        raise ValueError(
            'imagecorruptions needs images of at least 32x32 pixels, got '
            f'{img.shape[0]}x{img.shape[1]}'
        )
    corruption_type(corruption)  # raises for an unknown name
    check_severity(severity)
    if channel_order not in ('bgr', 'rgb'):
        raise ValueError(
            f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}"
        )
    if not 0 <= seed < 2**32:
        raise ValueError(f'seed must be in [0, 2**32), got {seed}')
    if severity == 0:
        return img.copy()
    library = _library()
    rgb = img
    if channels == 3 and channel_order == 'bgr':
        rgb = np.ascontiguousarray(img[..., ::-1])
    kwargs = {}
    if (
        'seed'
        in inspect.signature(library.corruption_dict[corruption]).parameters
    ):
        kwargs['seed'] = int(seed)
    state = np.random.get_state()
    try:
        np.random.seed(int(seed))
        out = library.corrupt(
            rgb, severity=int(severity), corruption_name=corruption, **kwargs
        )
    finally:
        np.random.set_state(state)
    if channels == 1:
        # The library makes a grey image RGB; bring it back to one channel.
        return cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).reshape(img.shape)
    if channel_order == 'bgr':
        out = out[..., ::-1]
    return np.ascontiguousarray(out)
