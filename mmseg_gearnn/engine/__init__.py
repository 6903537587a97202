from .hooks import (
    FiniteGearsHook,
    FrozenBaseGuardHook,
    GearCheckpointHook,
    RandomStateHook,
    SkippedFilesHook,
)
from .model_wrappers import GearNNDistributedDataParallel

__all__ = [
    'FiniteGearsHook',
    'FrozenBaseGuardHook',
    'GearCheckpointHook',
    'GearNNDistributedDataParallel',
    'RandomStateHook',
    'SkippedFilesHook',
]
