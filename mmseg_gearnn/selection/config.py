"""Running the selection from an mmseg config: its distortion space, its
base segmentor with a checkpoint loaded, and its dataloader as the source of
distorted batches."""

import copy
from typing import Optional

import torch.nn as nn

from ..distortions import DistortionSpace, build_space
from ..models.model_kind import is_gear_config
from .base_weights import load_base_checkpoint
from .data import DataloaderBatchSource
from .scores import get_scorer
from .select import run_selection


def space_from_config(cfg) -> DistortionSpace:
    """The distortion space of a config: its top-level ``distortion_space``.

    Raises:
        ValueError: if the key is absent or the space is empty.
    """
    space = cfg.get('distortion_space', None)
    if space is None:
        raise ValueError(
            'the config has no top-level `distortion_space`: inherit one of '
            'configs/_base_/distortions/*.py or set e.g. '
            'distortion_space = dict(distortions=dict(jpeg=[40, 20, 10]))'
        )
    if not space or not dict(space).get('distortions'):
        raise ValueError(
            'the distortion space of the config is empty: '
            f'distortion_space = {space!r}; give at least one type with '
            'levels, e.g. distortions=dict(jpeg=[40, 20, 10])'
        )
    return build_space(space)


def base_model_cfg(model_cfg):
    """The base segmentor's config: ``model.segmentor`` of a GearNN config
    (any subclass, the distilled one included; with the wrapper's data
    preprocessor), else ``model`` itself."""
    from mmengine.config import ConfigDict

    if not is_gear_config(dict(model=model_cfg)):
        return model_cfg
    base = ConfigDict(copy.deepcopy(model_cfg['segmentor']))
    if model_cfg.get('data_preprocessor') is not None:
        base['data_preprocessor'] = copy.deepcopy(
            model_cfg['data_preprocessor']
        )
    return base


def build_base_model(
    model_cfg, checkpoint: str, device: str = 'cpu'
) -> nn.Module:
    """The base segmentor of ``model_cfg`` (see :func:`base_model_cfg`),
    SyncBN reverted to BN, with ``checkpoint`` loaded strictly, on
    ``device``."""
    from mmengine.model import revert_sync_batchnorm
    from mmseg.registry import MODELS

    model = revert_sync_batchnorm(MODELS.build(base_model_cfg(model_cfg)))
    load_base_checkpoint(model, checkpoint)
    return model.to(device)


def run_selection_from_config(
    cfg,
    checkpoint: str,
    method: str,
    *,
    config_path: Optional[str] = None,
    dataloader: str = 'train_dataloader',
    device: str = 'cpu',
    **kwargs,
) -> dict:
    """:func:`~.select.run_selection` for an mmseg config and a base
    checkpoint.

    Builds ``cfg.model`` (SyncBN reverted to BN), loads the checkpoint
    strictly, reads the distortion space from ``cfg.distortion_space`` and
    the data from ``cfg[dataloader]`` with a distortion transform per
    level. The caller sets the default scope and imports
    ``custom_imports``.

    The selection is computed by one process: inside an initialised
    process group of several ranks the data loaders would be sharded and
    the scores would depend on the world size, so this raises there. For a
    launcher, run it on rank 0 with
    :func:`mmseg_gearnn.utils.run_on_main_process`, which hands the record
    to every rank (``tools/select_params.py --launcher pytorch`` does).

    Args:
        cfg (Config): the mmseg config.
        checkpoint (str): the base checkpoint.
        method (str): the scoring method.
        config_path (str, optional): the config's path, for the record.
        dataloader (str): the config key of the dataloader to score on.
        device (str): where to run the model.
        **kwargs: passed to :func:`~.select.run_selection`.

    Returns:
        dict: the selection record.
    """
    from mmengine.dist import get_world_size

    if get_world_size() > 1:
        raise RuntimeError(
            'run_selection_from_config runs in one process, not inside a '
            'process group of several ranks (its data would be sharded): '
            'use mmseg_gearnn.utils.run_on_main_process'
        )
    space = space_from_config(cfg)
    needs_data = get_scorer(method).needs_data
    if needs_data and dataloader not in cfg:
        raise ValueError(
            f'method {method!r} needs data but the config has no '
            f'{dataloader!r}'
        )
    model = build_base_model(cfg.model, checkpoint, device)
    source = None
    if needs_data:
        source = DataloaderBatchSource(
            cfg[dataloader], space, seed=kwargs.get('seed', 0)
        )
    return run_selection(
        model,
        space,
        method,
        source=source,
        checkpoint=checkpoint,
        config=config_path,
        **kwargs,
    )
