from .metrics import DistortionIoUMetric, format_class_table, format_miou_table
from .metrics.distortion_iou import format_robustness_table
from .report import (
    corruption_markdown,
    corruption_summaries,
    load_reports,
    markdown_table,
    plot_miou_vs_level,
    write_csv,
    write_markdown_table,
    write_robustness_report,
)
from .robustness import (
    LevelTable,
    corruption_errors,
    corruption_table,
    mce,
    mean_over,
    mean_per_corruption,
    mean_per_group,
    mpc,
    robustness_summary,
    rpc,
)

__all__ = [
    'DistortionIoUMetric',
    'format_class_table',
    'format_miou_table',
    'format_robustness_table',
    'corruption_markdown',
    'corruption_summaries',
    'load_reports',
    'markdown_table',
    'plot_miou_vs_level',
    'write_csv',
    'write_markdown_table',
    'write_robustness_report',
    'LevelTable',
    'corruption_errors',
    'corruption_table',
    'mce',
    'mean_over',
    'mean_per_corruption',
    'mean_per_group',
    'mpc',
    'robustness_summary',
    'rpc',
]
