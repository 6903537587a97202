from . import backbones  # noqa: F401
from .gear_bank import GearBank, adaptor_candidates, bn_names
from .segmentors import GearNNSegmentor, StabilitySegmentor

__all__ = [
    'GearBank',
    'GearNNSegmentor',
    'StabilitySegmentor',
    'adaptor_candidates',
    'bn_names',
]
