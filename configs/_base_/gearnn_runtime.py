# The one place that loads the plugin: every mmseg_gearnn config inherits it.
# It holds nothing else that an mmseg config defines (no mmseg config sets
# custom_hooks), so that it combines with any mmseg config as a sibling base.
custom_imports = dict(imports=['mmseg_gearnn'], allow_failed_imports=False)

# Keys that PackSegInputs copies into data_sample.metainfo; 'distortion'
# carries (type, level, gear) from the distortion transforms to the model.
gearnn_meta_keys = (
    'img_path',
    'seg_map_path',
    'ori_shape',
    'img_shape',
    'pad_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'reduce_zero_label',
    'distortion',
)

# Hooks every gear-training run wants: the gears start from a loaded base
# with their adaptor (selected by budget, or the one a checkpoint holds), the
# base must stay frozen, the gears finite, each gear's BN statistics
# re-estimated under its final tensors, the compact gears file is written
# beside each checkpoint, `--resume` continues exactly as the
# uninterrupted run would have, and the log says how many batches each gear
# got (and warns of a gear that got none).
gearnn_hooks = [
    dict(type='FrozenBaseGuardHook', interval=50),
    dict(type='FiniteGearsHook', interval=1),
    dict(type='GearBNRecalibrationHook', batches_per_gear=4),
    dict(type='GearCheckpointHook'),
    dict(type='RandomStateHook'),
    dict(type='DistortedInputsGuardHook', max_clean_iters=20),
    dict(type='AdaptorSelectionHook'),
    dict(type='GearBatchCountHook'),
]
# A config that wraps an mmseg segmentor and lists no hooks still stops, with
# the line to add, when no checkpoint filled its base (no load_from) or no
# sample can reach a gear (e.g. an inherited mmseg pipeline without a
# distortion transform). tools/train.py and tools/test.py
# add the transform and the rest of gearnn_hooks to such a config
# (mmseg_gearnn.engine.complete_gear_config); the hook does nothing for
# models without gears.
custom_hooks = [
    dict(type='DistortedInputsGuardHook', max_clean_iters=20),
    dict(type='AdaptorSelectionHook'),
]
