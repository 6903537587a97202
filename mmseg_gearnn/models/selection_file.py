"""Reading a selection file (``tools/select_params.py``): what a model
given ``adaptor='selection.json'`` reads, and what the selection reads back
(:mod:`mmseg_gearnn.selection.record` writes it)."""

import json
import os
from typing import Dict, Optional

import torch.nn as nn

from ..distortions import build_space
from .adaptor_tensors import (
    adaptor_candidates,
    in_modules,
    training_only_modules,
)

FORMAT_VERSION = 1
REQUIRED_KEYS = (
    'format_version',
    'method',
    'tensors',
    'selected',
    'budget',
    'distortion_space',
    'model_total_bytes',
)


def load_selection(
    path: str, model: Optional[nn.Module] = None, space=None
) -> dict:
    """Read and validate a selection file.

    Args:
        path (str): the JSON file.
        model (nn.Module, optional): check that every tensor of the file
            is a candidate of this model with the same number of elements
            (or a tensor of a training-only module: files written while
            those were candidates list them).
        space (dict | DistortionSpace, optional): check that the file was
            computed for this distortion space.

    Returns:
        dict: the selection record.

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed file, or a mismatch with ``model`` / ``space``
            (every mismatching name listed).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'selection file not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'{path} is not valid JSON: {e}') from e
    if not isinstance(record, dict):
        raise ValueError(f'{path} is not a selection file (not an object)')
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f'{path} is not a selection file: lacks {missing}')
    if record['format_version'] != FORMAT_VERSION:
        raise ValueError(
            f'{path} has format_version {record["format_version"]!r}; '
            f'this code reads format_version {FORMAT_VERSION}'
        )
    tensors = record['tensors']
    if not isinstance(tensors, list) or not all(
        isinstance(t, dict) and {'name', 'numel', 'selected'} <= set(t)
        for t in tensors
    ):
        raise ValueError(
            f"{path}: 'tensors' must be a list of objects with name, "
            'numel and selected'
        )
    numel = {t['name']: t['numel'] for t in tensors}
    flagged = [t['name'] for t in tensors if t['selected']]
    if sorted(flagged) != sorted(record['selected']):
        raise ValueError(
            f"{path}: 'selected' and the tensors flagged selected differ"
        )
    if model is not None:
        _check_model(path, numel, model)
    if space is not None:
        expected, found = build_space(space), record['distortion_space']
        if build_space(found) != expected:
            raise ValueError(
                f'{path} was computed for the distortion space {found}, '
                f'not for {expected.to_dict()}'
            )
    return record


def _check_model(path: str, numel: Dict[str, int], model: nn.Module):
    have = {n: t.numel() for n, t in adaptor_candidates(model).items()}
    skip = training_only_modules(model)
    have.update(
        (n, t.numel())
        for n, t in model.state_dict().items()
        if in_modules(n, skip)
    )
    absent = [n for n in numel if n not in have]
    wrong = [
        f'{n} (file {numel[n]}, model {have[n]})'
        for n in numel
        if n in have and have[n] != numel[n]
    ]
    if absent or wrong:
        lines = [f'{path} does not match the model:']
        if absent:
            lines.append(
                f'  tensors not in the model ({len(absent)}): '
                + ', '.join(absent)
            )
        if wrong:
            lines.append(
                f'  element counts differ ({len(wrong)}): ' + ', '.join(wrong)
            )
        raise ValueError('\n'.join(lines))
