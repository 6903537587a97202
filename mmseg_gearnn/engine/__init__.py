from .hooks import (
    ChannelsLastHook,
    FiniteGearsHook,
    FrozenBaseGuardHook,
    GearBNRecalibrationHook,
    GearCheckpointHook,
    RandomStateHook,
    SkippedFilesHook,
)
from .model_wrappers import GearNNDistributedDataParallel
from .optimizers import GearOptimWrapperConstructor

__all__ = [
    'ChannelsLastHook',
    'FiniteGearsHook',
    'FrozenBaseGuardHook',
    'GearBNRecalibrationHook',
    'GearCheckpointHook',
    'GearNNDistributedDataParallel',
    'GearOptimWrapperConstructor',
    'RandomStateHook',
    'SkippedFilesHook',
]
