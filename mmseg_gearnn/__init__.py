"""GearNN for MMSegmentation: partial weight adaptation to input distortions.

Importing this package registers every component in mmseg's registries;
configs do it with ``custom_imports = dict(imports=['mmseg_gearnn'])``.
"""

from . import (  # noqa: F401  # noqa: F401
    datasets,
    distortions,
    engine,
    evaluation,
    models,
    registry,
    selection,
    utils,
)
from .distortions import DistortionSpace, build_space

__version__ = '0.1.0'

__all__ = ['DistortionSpace', 'build_space', '__version__']
