from .functional import (
    brightness,
    contrast,
    distort,
    gaussian_blur,
    gaussian_noise,
    jpeg,
    psnr,
    resolution,
)
from .space import CLEAN, CLEAN_GEAR, DistortionSpace, build_space
from .transforms import (
    FixedDistortion,
    PairedDistortion,
    RandomDistortion,
    RequestedDistortion,
)

__all__ = [
    'brightness',
    'contrast',
    'distort',
    'gaussian_blur',
    'gaussian_noise',
    'jpeg',
    'psnr',
    'resolution',
    'CLEAN',
    'CLEAN_GEAR',
    'DistortionSpace',
    'build_space',
    'FixedDistortion',
    'PairedDistortion',
    'RandomDistortion',
    'RequestedDistortion',
]
