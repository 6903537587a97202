# The one place that loads the plugin: every mmseg_gearnn config inherits it.
_base_ = ['mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['mmseg_gearnn'], allow_failed_imports=False)
default_scope = 'mmseg'

# Keys that PackSegInputs copies into data_sample.metainfo; 'distortion'
# carries (type, level, gear) from the distortion transforms to the model.
gearnn_meta_keys = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape',
                    'pad_shape', 'scale_factor', 'flip', 'flip_direction',
                    'reduce_zero_label', 'distortion')
