from .channels_last_hook import ChannelsLastHook
from .finite_gears_hook import FiniteGearsHook
from .frozen_base_guard_hook import FrozenBaseGuardHook
from .gear_bn_recalibration_hook import GearBNRecalibrationHook
from .gear_checkpoint_hook import GearCheckpointHook
from .random_state_hook import RandomStateHook
from .skipped_files_hook import SkippedFilesHook

__all__ = [
    'ChannelsLastHook',
    'FiniteGearsHook',
    'FrozenBaseGuardHook',
    'GearBNRecalibrationHook',
    'GearCheckpointHook',
    'RandomStateHook',
    'SkippedFilesHook',
]
