from .hooks import FrozenBaseGuardHook, GearCheckpointHook

__all__ = ['FrozenBaseGuardHook', 'GearCheckpointHook']
