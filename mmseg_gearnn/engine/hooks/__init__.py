from .adaptor_selection_hook import AdaptorSelectionHook
from .channels_last_hook import ChannelsLastHook
from .console_progress_hook import ConsoleProgressHook
from .distorted_inputs_guard_hook import DistortedInputsGuardHook
from .finite_gears_hook import FiniteGearsHook
from .frozen_base_guard_hook import FrozenBaseGuardHook
from .gear_batch_count_hook import GearBatchCountHook
from .gear_bn_recalibration_hook import GearBNRecalibrationHook
from .gear_checkpoint_hook import GearCheckpointHook
from .gear_visualization_hook import GearVisualizationHook
from .random_state_hook import RandomStateHook
from .skipped_files_hook import SkippedFilesHook

__all__ = [
    'AdaptorSelectionHook',
    'ChannelsLastHook',
    'ConsoleProgressHook',
    'DistortedInputsGuardHook',
    'FiniteGearsHook',
    'FrozenBaseGuardHook',
    'GearBatchCountHook',
    'GearBNRecalibrationHook',
    'GearCheckpointHook',
    'GearVisualizationHook',
    'RandomStateHook',
    'SkippedFilesHook',
]
