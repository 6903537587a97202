"""Which kind of segmentor a config builds: a gear model, a distilled one,
or another (read from the config, nothing is built)."""

from mmseg.registry import MODELS

from .segmentors import DistilledGearNNSegmentor, GearNNSegmentor


def model_class(cfg):
    """The class of the config's model (the segmentor under a test-time
    augmentation wrapper); None where it is not registered."""
    model = cfg.get('model', None) or {}
    if model.get('module') is not None and 'segmentor' not in model:
        model = model['module']  # a TTA model around the segmentor
    model_type = model.get('type')
    if isinstance(model_type, str):
        model_type = MODELS.get(model_type)
    return model_type if isinstance(model_type, type) else None


def is_gear_config(cfg) -> bool:
    """Whether the config's model is a :class:`GearNNSegmentor` (or a
    subclass), also under a test-time augmentation wrapper."""
    found = model_class(cfg)
    return found is not None and issubclass(found, GearNNSegmentor)


def is_distilled_config(cfg) -> bool:
    """Whether the config's model is a
    :class:`DistilledGearNNSegmentor` (or a subclass): its training
    compares every distorted frame with the clean one."""
    found = model_class(cfg)
    return found is not None and issubclass(found, DistilledGearNNSegmentor)
