from .camera_pipeline import camera_pipeline
from .export import export_gears, export_report, gear_checkpoint
from .frame_report import format_record
from .frames import FrameSource, read_metadata
from .inferencer import GearNNInferencer
from .model_init import init_gearnn_model
from .pipeline import evaluate_levels, last_checkpoint, run_gearnn, train
from .plain_config import base_config

__all__ = [
    'evaluate_levels',
    'last_checkpoint',
    'run_gearnn',
    'train',
    'base_config',
    'export_gears',
    'export_report',
    'gear_checkpoint',
    'FrameSource',
    'GearNNInferencer',
    'camera_pipeline',
    'format_record',
    'init_gearnn_model',
    'read_metadata',
]
