"""Label-free test-time adaptation of any mmseg segmentor to the incoming
stream: the rivals a user would pick instead of GearNN."""

from .base import TestTimeAdaptedSegmentor
from .online_bn import OnlineBNSegmentor
from .tent import TentSegmentor, mean_pixel_entropy

__all__ = [
    'OnlineBNSegmentor',
    'TentSegmentor',
    'TestTimeAdaptedSegmentor',
    'mean_pixel_entropy',
]
