from .checkpoint import (
    MMENGINE_SAFE_GLOBALS,
    UnsafeCheckpointError,
    load_checkpoint_safely,
    register_safe_globals,
)
from .config import set_data_root

__all__ = [
    'set_data_root',
    'MMENGINE_SAFE_GLOBALS',
    'UnsafeCheckpointError',
    'load_checkpoint_safely',
    'register_safe_globals',
]
