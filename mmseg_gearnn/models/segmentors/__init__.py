from .distilled_gearnn import DistilledGearNNSegmentor
from .gearnn import GearNNSegmentor
from .stability import StabilitySegmentor

__all__ = ['DistilledGearNNSegmentor', 'GearNNSegmentor', 'StabilitySegmentor']
