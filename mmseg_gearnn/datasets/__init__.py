"""Datasets and loading transforms (importing registers them in mmseg)."""

from .camvid import CamVidDataset
from .loading import LoadCheckedAnnotations, LoadCheckedImageFromFile
from .procedural import ProceduralStreetDataset, render_street
from .sweep import DistortionSweepDataset

__all__ = [
    'CamVidDataset',
    'DistortionSweepDataset',
    'LoadCheckedAnnotations',
    'LoadCheckedImageFromFile',
    'ProceduralStreetDataset',
    'render_street',
]
