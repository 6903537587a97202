from .checkpoint import (
    MMENGINE_SAFE_GLOBALS,
    UnsafeCheckpointError,
    load_checkpoint_safely,
    register_safe_globals,
)
from .config import (
    enable_amp,
    resume_from_work_dir,
    set_crop_size,
    set_data_root,
    set_distortion_space,
    show_inputs,
    skip_bad_files,
    with_meta_key,
    write_predictions,
)
from .dist import (
    init_dist,
    run_on_main_process,
    setup_dist_train,
    teardown_dist,
    unwrap_model,
)
from .io import atomic_torch_save, atomic_write

__all__ = [
    'enable_amp',
    'resume_from_work_dir',
    'show_inputs',
    'with_meta_key',
    'write_predictions',
    'atomic_torch_save',
    'atomic_write',
    'init_dist',
    'run_on_main_process',
    'set_crop_size',
    'set_data_root',
    'set_distortion_space',
    'skip_bad_files',
    'setup_dist_train',
    'teardown_dist',
    'unwrap_model',
    'MMENGINE_SAFE_GLOBALS',
    'UnsafeCheckpointError',
    'load_checkpoint_safely',
    'register_safe_globals',
]
