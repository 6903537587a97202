# The one place that loads the plugin: every mmseg_gearnn config inherits it.
# It holds nothing else that an mmseg config defines, so that it combines
# with any mmseg config as a sibling base.
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

# Hooks every gear-training run wants: the base must stay frozen, the gears
# finite, each gear's BN statistics re-estimated under its final tensors, the
# compact gears file is written beside each checkpoint, and `--resume`
# continues exactly as the uninterrupted run would have.
gearnn_hooks = [
    dict(type='FrozenBaseGuardHook', interval=50),
    dict(type='FiniteGearsHook', interval=1),
    dict(type='GearBNRecalibrationHook', batches_per_gear=4),
    dict(type='GearCheckpointHook'),
    dict(type='RandomStateHook'),
]
