from .inferencer import (
    FrameSource,
    GearNNInferencer,
    format_record,
    read_metadata,
)
from .pipeline import evaluate_levels, last_checkpoint, run_gearnn, train

__all__ = [
    'evaluate_levels',
    'last_checkpoint',
    'run_gearnn',
    'train',
    'FrameSource',
    'GearNNInferencer',
    'format_record',
    'read_metadata',
]
