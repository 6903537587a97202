from .frozen_base_guard_hook import FrozenBaseGuardHook
from .gear_checkpoint_hook import GearCheckpointHook

__all__ = ['FrozenBaseGuardHook', 'GearCheckpointHook']
