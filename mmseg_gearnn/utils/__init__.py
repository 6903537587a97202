from .checkpoint import (
    MMENGINE_SAFE_GLOBALS,
    UnsafeCheckpointError,
    load_checkpoint_safely,
    register_safe_globals,
)

__all__ = [
    'MMENGINE_SAFE_GLOBALS',
    'UnsafeCheckpointError',
    'load_checkpoint_safely',
    'register_safe_globals',
]
