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
from .space import (
    CLEAN,
    CLEAN_GEAR,
    COMPOUND_SEPARATOR,
    DistortionSpace,
    build_space,
    compound_record,
)
from .transforms import (
    CompoundDistortion,
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
    'COMPOUND_SEPARATOR',
    'DistortionSpace',
    'build_space',
    'compound_record',
    'CompoundDistortion',
    'FixedDistortion',
    'PairedDistortion',
    'RandomDistortion',
    'RequestedDistortion',
]
