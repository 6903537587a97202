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

__all__ = [
    'ChannelsLastHook',
    'FiniteGearsHook',
    'FrozenBaseGuardHook',
    'GearBNRecalibrationHook',
    'GearCheckpointHook',
    'GearNNDistributedDataParallel',
    'RandomStateHook',
    'SkippedFilesHook',
]
