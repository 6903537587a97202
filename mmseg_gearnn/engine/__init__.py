from .hooks import FiniteGearsHook, FrozenBaseGuardHook, GearCheckpointHook

__all__ = ['FiniteGearsHook', 'FrozenBaseGuardHook', 'GearCheckpointHook']
