from . import backbones  # noqa: F401
from .estimators import DistortionEstimator
from .gear_bank import GearBank, adaptor_candidates, bn_names
from .losses import ClassWeightedCrossEntropyLoss
from .segmentors import GearNNSegmentor, StabilitySegmentor

__all__ = [
    'ClassWeightedCrossEntropyLoss',
    'DistortionEstimator',
    'GearBank',
    'GearNNSegmentor',
    'StabilitySegmentor',
    'adaptor_candidates',
    'bn_names',
]
