from .distortion_iou import (
    DistortionIoUMetric,
    format_class_table,
    format_miou_table,
)

__all__ = ['DistortionIoUMetric', 'format_class_table', 'format_miou_table']
