"""GearNN for MMSegmentation: partial weight adaptation to input distortions.

Importing this package registers every component in mmseg's registries;
configs do it with ``custom_imports = dict(imports=['mmseg_gearnn'])``.
"""
from . import datasets, distortions, engine, evaluation, models  # noqa: F401
from . import selection, utils  # noqa: F401
from .distortions import DistortionSpace, build_space

__version__ = '0.1.0'

__all__ = ['DistortionSpace', 'build_space', '__version__']
