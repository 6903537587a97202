from .metrics import DistortionIoUMetric, format_class_table, format_miou_table
from .report import (
    load_reports,
    markdown_table,
    plot_miou_vs_level,
    write_csv,
    write_markdown_table,
    write_robustness_report,
)

__all__ = [
    'DistortionIoUMetric',
    'format_class_table',
    'format_miou_table',
    'load_reports',
    'markdown_table',
    'plot_miou_vs_level',
    'write_csv',
    'write_markdown_table',
    'write_robustness_report',
]
