from .finite_gears_hook import FiniteGearsHook
from .frozen_base_guard_hook import FrozenBaseGuardHook
from .gear_checkpoint_hook import GearCheckpointHook

__all__ = ['FiniteGearsHook', 'FrozenBaseGuardHook', 'GearCheckpointHook']
