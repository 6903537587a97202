from . import backbones, tta  # noqa: F401  (imported to register)
from .adaptor_tensors import adaptor_candidates, bn_names
from .estimators import DistortionEstimator
from .gear_bank import GearBank
from .losses import ClassWeightedCrossEntropyLoss
from .routing import GearRouter, build_router
from .segmentors import (
    DistilledGearNNSegmentor,
    GearNNSegmentor,
    StabilitySegmentor,
)

__all__ = [
    'ClassWeightedCrossEntropyLoss',
    'DistortionEstimator',
    'GearBank',
    'DistilledGearNNSegmentor',
    'GearNNSegmentor',
    'GearRouter',
    'StabilitySegmentor',
    'adaptor_candidates',
    'bn_names',
    'build_router',
]
