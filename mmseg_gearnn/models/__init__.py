from .gear_bank import GearBank, adaptor_candidates, bn_names
from .segmentors import GearNNSegmentor

__all__ = ['GearBank', 'GearNNSegmentor', 'adaptor_candidates', 'bn_names']
