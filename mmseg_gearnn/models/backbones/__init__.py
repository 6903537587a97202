from .efficientnet_lite import (
    EfficientNetLite0,
    convert_efficientnet_lite0,
    efficientnet_lite0_imagenet_path,
    load_efficientnet_lite0_checkpoint,
)

__all__ = [
    'EfficientNetLite0',
    'convert_efficientnet_lite0',
    'efficientnet_lite0_imagenet_path',
    'load_efficientnet_lite0_checkpoint',
]
