from .gearnn import GearNNSegmentor
from .stability import StabilitySegmentor

__all__ = ['GearNNSegmentor', 'StabilitySegmentor']
