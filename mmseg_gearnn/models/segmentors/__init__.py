from .gearnn import GearNNSegmentor

__all__ = ['GearNNSegmentor']
