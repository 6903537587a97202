"""Estimating an input's gear from the image alone (no metadata)."""

from .distortion_estimator import (
    DistortionEstimator,
    denormalize_inputs,
    to_bgr_uint8,
)
from .features import FEATURE_NAMES, batch_features, image_features

__all__ = [
    'DistortionEstimator',
    'FEATURE_NAMES',
    'batch_features',
    'denormalize_inputs',
    'image_features',
    'to_bgr_uint8',
]
