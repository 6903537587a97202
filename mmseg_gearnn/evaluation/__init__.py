from .metrics import DistortionIoUMetric, format_class_table, format_miou_table
from .report import (
    atomic_write,
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
    'atomic_write',
    'load_reports',
    'markdown_table',
    'plot_miou_vs_level',
    'write_csv',
    'write_markdown_table',
    'write_robustness_report',
]
