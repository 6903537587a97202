from .hooks import (
    FiniteGearsHook,
    FrozenBaseGuardHook,
    GearBNRecalibrationHook,
    GearCheckpointHook,
    RandomStateHook,
    SkippedFilesHook,
)
from .model_wrappers import GearNNDistributedDataParallel

__all__ = [
    'FiniteGearsHook',
    'FrozenBaseGuardHook',
    'GearBNRecalibrationHook',
    'GearCheckpointHook',
    'GearNNDistributedDataParallel',
    'RandomStateHook',
    'SkippedFilesHook',
]
