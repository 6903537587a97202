from .gear_config import (
    GEAR_META_KEY,
    add_clean_copies,
    add_distortion_sweeps,
    add_gear_distortions,
    add_gear_hooks,
    check_budget_adaptor,
    complete_gear_config,
    is_distortion_step,
    use_tta,
    warn_jitter_after_distortion,
)
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
    'GEAR_META_KEY',
    'add_clean_copies',
    'add_distortion_sweeps',
    'add_gear_distortions',
    'add_gear_hooks',
    'check_budget_adaptor',
    'complete_gear_config',
    'is_distortion_step',
    'use_tta',
    'warn_jitter_after_distortion',
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
