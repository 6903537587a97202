"""A GearNN model ready for inference or export, as mmseg's ``init_model``
builds one: weights, gears and ``dataset_meta``."""

from typing import List, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import load_checkpoint
from mmseg.registry import DATASETS, MODELS


def fixed_palette(num_classes: int) -> List[List[int]]:
    """A deterministic RGB palette for models without dataset metainfo."""
    rng = np.random.RandomState(42)
    return rng.randint(0, 256, size=(max(num_classes, 1), 3)).tolist()


def init_gearnn_model(
    cfg: Config,
    checkpoint: Optional[str] = None,
    gears_file: Optional[str] = None,
    device: str = 'cpu',
) -> torch.nn.Module:
    """A GearNN model in eval mode, as mmseg's ``init_model`` builds one:
    the checkpoint, then the gears file, and ``dataset_meta`` (class names
    and palette: the checkpoint's, else the config's dataset's, else
    numbered).

    Raises:
        TypeError: the config's model is not a GearNN segmentor.
        ValueError: the gears file was made for another model (the message
            lists the mismatches).
    """
    model = MODELS.build(cfg.model)
    if not (hasattr(model, 'route') and hasattr(model, 'space')):
        raise TypeError(
            f'{cfg.filename or "the config"} builds a '
            f'{type(model).__name__}, not a GearNNSegmentor'
        )
    meta: dict = {}
    if checkpoint is not None:
        # Named in the errors of load_gears (and recorded by save_gears).
        model.base_checkpoint = checkpoint
        loaded = load_checkpoint(model, checkpoint, map_location='cpu')
        meta = loaded.get('meta', {}) if isinstance(loaded, dict) else {}
    if gears_file is not None:
        model.load_gears(gears_file)
    model.dataset_meta = _dataset_meta(
        meta.get('dataset_meta') or _config_metainfo(cfg),
        int(model.num_classes),
    )
    return model.to(device).eval()


def _config_metainfo(cfg: Config) -> Optional[dict]:
    """The metainfo of the config's test (or val) dataset class."""
    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        while dataset is not None:
            if dataset.get('metainfo'):
                return dict(dataset['metainfo'])
            try:
                cls = DATASETS.get(dataset.get('type'))
            except Exception:
                cls = None
            info = getattr(cls, 'METAINFO', None)
            if info and info.get('palette'):
                return dict(info)
            dataset = dataset.get('dataset')
    return None


def _dataset_meta(info: Optional[dict], num_classes: int) -> dict:
    """Class names and an RGB palette for ``num_classes`` classes: the
    dataset's where it has them, else numbered classes and a fixed
    palette."""
    info = dict(info or {})
    classes = list(info.get('classes') or [])
    if len(classes) < num_classes:
        classes = [str(i) for i in range(num_classes)]
    palette = [list(map(int, c)) for c in info.get('palette') or []]
    if len(palette) < len(classes):
        palette = fixed_palette(len(classes))
    return dict(classes=classes, palette=palette[: len(classes)])
