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
from .runner import ConsoleRunner

__all__ = [
    'ChannelsLastHook',
    'ConsoleRunner',
    'FiniteGearsHook',
    'FrozenBaseGuardHook',
    'GearBNRecalibrationHook',
    'GearCheckpointHook',
    'GearNNDistributedDataParallel',
    'GearOptimWrapperConstructor',
    'RandomStateHook',
    'SkippedFilesHook',
]
