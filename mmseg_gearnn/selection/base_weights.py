"""Loading the base checkpoint strictly, and fingerprinting it."""

import hashlib
import os
from typing import Dict, List

import torch
import torch.nn as nn

from ..utils import load_checkpoint_safely

#: How many names of each kind of mismatch an error message lists.
MAX_LISTED = 20


def read_checkpoint(path: str) -> dict:
    """Read a checkpoint file safely (never ``weights_only=False``).

    Uses :func:`mmseg_gearnn.utils.load_checkpoint_safely`, which
    allowlists exactly the types mmengine checkpoints need. This is the one
    place where selection reads checkpoints.

    Args:
        path (str): the checkpoint file.

    Returns:
        dict: the loaded checkpoint.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    return load_checkpoint_safely(path, map_location='cpu')


# Prefixes every key of a checkpoint may carry around the segmentor's own
# names: DataParallel's, then a wrapping segmentor's (stability training).
WRAPPER_PREFIXES = ('module.', 'segmentor.')


def extract_state_dict(checkpoint) -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint: its ``state_dict`` entry (an
    mmengine checkpoint) or the checkpoint itself (a bare state dict), a
    ``module.`` prefix (DataParallel) and a ``segmentor.`` prefix (a
    wrapping segmentor such as stability training's, which holds nothing
    else) removed."""
    if not isinstance(checkpoint, dict):
        raise TypeError(
            f'a checkpoint must be a dict, got {type(checkpoint).__name__}'
        )
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict) or not all(
        torch.is_tensor(v) for v in state.values()
    ):
        raise ValueError(
            'the checkpoint holds neither a state_dict entry nor a bare '
            f'state dict of tensors; its keys are {sorted(checkpoint)[:20]}'
        )
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _listed(names: List[str]) -> str:
    shown = ', '.join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown + (f', ... ({more} more)' if more > 0 else '')


def check_state_dict(
    model: nn.Module, state_dict: Dict[str, torch.Tensor], source: str = ''
) -> None:
    """Raise if ``state_dict`` does not fit ``model`` exactly.

    Args:
        model (nn.Module): the model the config builds.
        state_dict (dict): weights to load into it.
        source (str): where they come from, for the message.

    Raises:
        ValueError: listing the missing keys, the unexpected keys and the
            keys whose shape differs.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f'{k} (checkpoint {tuple(state_dict[k].shape)}, model '
        f'{tuple(expected[k].shape)})'
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [
        f'the checkpoint {source} does not match the model the config '
        'builds (is it a checkpoint of this config?):'
    ]
    if missing:
        lines.append(f'  missing keys ({len(missing)}): {_listed(missing)}')
    if unexpected:
        lines.append(
            f'  unexpected keys ({len(unexpected)}): {_listed(unexpected)}'
        )
    if mismatched:
        lines.append(
            f'  shape mismatches ({len(mismatched)}): {_listed(mismatched)}'
        )
    raise ValueError('\n'.join(lines))


def load_base_checkpoint(model: nn.Module, path: str) -> nn.Module:
    """Load a base checkpoint into ``model``, strictly.

    Args:
        model (nn.Module): the model the config builds.
        path (str): the checkpoint file.

    Returns:
        nn.Module: ``model``, with the weights loaded.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the checkpoint does not match the model (keys listed).
    """
    state = extract_state_dict(read_checkpoint(path))
    check_state_dict(model, state, source=path)
    model.load_state_dict(state, strict=True)
    return model


def file_fingerprint(path: str, chunk_bytes: int = 1 << 20) -> dict:
    """``path``, ``sha256`` and ``size_bytes`` of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b''):
            digest.update(chunk)
    return dict(
        path=str(path),
        sha256=digest.hexdigest(),
        size_bytes=os.path.getsize(path),
    )
