"""Datasets and loading transforms (importing registers them in mmseg)."""

from .camvid import CamVidDataset
from .class_balance import label_pixel_counts, median_frequency_weights
from .loading import LoadCheckedAnnotations, LoadCheckedImageFromFile
from .procedural import ProceduralStreetDataset, render_street
from .sweep import DistortionSweepDataset

__all__ = [
    'CamVidDataset',
    'DistortionSweepDataset',
    'LoadCheckedAnnotations',
    'LoadCheckedImageFromFile',
    'ProceduralStreetDataset',
    'label_pixel_counts',
    'median_frequency_weights',
    'render_street',
]
