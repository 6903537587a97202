from .distortion_iou import DistortionIoUMetric, format_miou_table

__all__ = ['DistortionIoUMetric', 'format_miou_table']
