"""The compact gears file: every gear's adaptor of a :class:`GearBank` and
nothing of the base, bound to the base it belongs to.

The file records the adaptor's signature (name -> shape), a fingerprint of
the base's architecture and the sha256 of the base's weights
(:func:`base_sha256`). Reading it onto another model, adaptor or gear
table, or onto other base weights, is refused with the mismatches named.
"""

import hashlib
import logging
import os
from typing import TYPE_CHECKING, Dict, List, Optional

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from ..distortions.space import build_space
from ..utils.io import atomic_torch_save

if TYPE_CHECKING:
    from ..distortions.space import DistortionSpace
    from .gear_bank import GearBank

GEARS_FORMAT_VERSION = 1


def base_sha256(model: nn.Module) -> str:
    """The sha256 of a model's weights: every state-dict entry's name,
    dtype, shape and bytes, in state-dict order.

    The bytes of a contiguous CPU tensor are hashed in place (no copy);
    hashlib releases the GIL on large buffers.
    """
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f'{name}:{t.dtype}:{tuple(t.shape)};'.encode())
        flat = t.detach().reshape(-1).cpu()
        if flat.numel():
            h.update(flat.view(torch.uint8).numpy())
    return h.hexdigest()


def base_fingerprint(model: nn.Module) -> str:
    """A hash of every tensor name and shape of the base model."""
    h = hashlib.sha256()
    for n, t in model.state_dict().items():
        h.update(f'{n}:{tuple(t.shape)};'.encode())
    return h.hexdigest()[:16]


def signature(bank: 'GearBank') -> Dict[str, List[int]]:
    """Name -> shape of every adaptor tensor of the bank."""
    state = bank.base.state_dict()
    return {n: list(state[n].shape) for n in bank.names}


def write_gears_file(
    bank: 'GearBank',
    path: str,
    meta: Optional[dict] = None,
    table: Optional[list] = None,
) -> None:
    """Writes every gear's adaptor (and nothing of the base) atomically.

    Each gear is stored as one flat tensor per dtype, in the order of the
    bank's names: a file of many small tensors would be mostly per-tensor
    overhead. ``table`` (``[type, level]`` per gear id, see
    :meth:`~mmseg_gearnn.distortions.DistortionSpace.gear_table`) is
    recorded: a reader maps the gears by identity, not by position.
    """
    gears = {}
    for gear in range(1, bank.num_gears):
        by_dtype: Dict[str, List[Tensor]] = {}
        for t in bank.tensors(gear).values():
            by_dtype.setdefault(str(t.dtype), []).append(
                t.detach().cpu().reshape(-1)
            )
        gears[gear] = {k: torch.cat(v) for k, v in by_dtype.items()}
    payload = dict(
        format_version=GEARS_FORMAT_VERSION,
        signature=signature(bank),
        base_fingerprint=base_fingerprint(bank.base),
        base_sha256=bank.base_sha256(),
        meta=dict(meta or {}),
        gears=gears,
    )
    if table is not None:
        payload['gear_table'] = [list(entry) for entry in table]
    atomic_torch_save(payload, path)


def read_gears_file(
    bank: 'GearBank',
    path: str,
    expected_meta: Optional[dict] = None,
    allow_other_base: bool = False,
    base_checkpoint: Optional[str] = None,
    space: Optional['DistortionSpace'] = None,
) -> dict:
    """Loads a gears file written by :func:`write_gears_file` into the
    bank; refuses one made for another model, selection or gear table with
    the mismatches listed.

    With ``space`` (the bank's gear table), gears are matched by (type,
    level): the file's recorded table (or, in a file written before
    tables were recorded, the table of its ``meta['space']``) may list
    them in any order, or hold gears the model has not; a file that lacks
    a gear of the model is refused, both tables named. Without, gears are
    taken by position.

    Gears trained on other base weights (the file's ``base_sha256``
    differs from the base's) are refused unless ``allow_other_base``. A
    file written before the hash was recorded loads with a warning.

    Args:
        bank (GearBank): the gears to fill.
        path (str): the gears file.
        expected_meta (dict, optional): meta entries the file must hold
            (when it has them) with these values.
        allow_other_base (bool): load gears trained on other weights of
            the same architecture (a warning names both hashes).
        base_checkpoint (str, optional): the file the base's weights came
            from, named in the error.

    Returns:
        dict: the file's meta.
    """
    payload = _read(path)
    problems = _mismatches(bank, payload, expected_meta or {})
    mapping = {g: g for g in range(1, bank.num_gears)}
    if space is not None:
        try:
            mapping = _gear_mapping(space, payload)
        except ValueError as err:
            problems.append(str(err))
    elif len(payload['gears']) != bank.num_gears - 1:
        problems.append(
            f'the file has {len(payload["gears"])} gears, '
            f'the model {bank.num_gears - 1} (+ clean)'
        )
    if problems:
        raise ValueError(
            f'gears file {path} does not match this model:\n  '
            + '\n  '.join(problems)
        )
    _check_base_weights(bank, path, payload, allow_other_base, base_checkpoint)
    stored = {int(g): flat for g, flat in payload['gears'].items()}
    with torch.no_grad():
        for gear in range(1, bank.num_gears):
            flat = stored[mapping[gear]]
            offsets: Dict[str, int] = {}
            for t in bank.tensors(gear).values():
                key = str(t.dtype)
                start = offsets.get(key, 0)
                t.copy_(flat[key][start : start + t.numel()].view_as(t))
                offsets[key] = start + t.numel()
    return payload['meta']


def _read(path: str) -> dict:
    """The payload of a gears file of this format version."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'gears file not found: {path}')
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # corrupt, truncated or unsafe
        raise ValueError(f'cannot read gears file {path}: {err}') from err
    if (
        not isinstance(payload, dict)
        or payload.get('format_version') != GEARS_FORMAT_VERSION
    ):
        raise ValueError(
            f'{path} is not a gears file of format version '
            f'{GEARS_FORMAT_VERSION}'
        )
    return payload


def _mismatches(
    bank: 'GearBank', payload: dict, expected_meta: dict
) -> List[str]:
    """What keeps a gears file from this bank: adaptor names and shapes,
    gear count, meta, base architecture."""
    problems = []
    ours, theirs = signature(bank), payload['signature']
    for n in sorted(set(ours) | set(theirs)):
        if n not in theirs:
            problems.append(f'{n}: missing from the file')
        elif n not in ours:
            problems.append(f"{n}: not in this model's adaptor")
        elif ours[n] != theirs[n]:
            problems.append(
                f'{n}: shape {theirs[n]} in the file, {ours[n]} in the model'
            )
    for key, value in expected_meta.items():
        if key in payload['meta'] and payload['meta'][key] != value:
            problems.append(
                f'{key}: {payload["meta"][key]!r} in the file,'
                f' {value!r} in the model'
            )
    if not problems and payload['base_fingerprint'] != base_fingerprint(
        bank.base
    ):
        problems.append(
            'the base model differs (architecture or tensor shapes) from '
            'the one the gears were made for'
        )
    return problems


def _gear_mapping(space: 'DistortionSpace', payload: dict) -> Dict[int, int]:
    """The model's gear id -> the file's, by (type, level)."""
    table = payload.get('gear_table')
    if table is None and 'space' in payload['meta']:
        table = build_space(payload['meta']['space']).gear_table()
    if table is None:
        if len(payload['gears']) != space.num_gears - 1:
            raise ValueError(
                f'the file has {len(payload["gears"])} gears, '
                f'the model {space.num_gears - 1} (+ clean)'
            )
        return {g: g for g in range(space.num_gears)}
    try:
        return space.gear_map(table)
    except ValueError as err:
        raise ValueError(f'gear table: {err}') from None


def _check_base_weights(
    bank: 'GearBank',
    path: str,
    payload: dict,
    allow_other_base: bool,
    base_checkpoint: Optional[str],
) -> None:
    """Refuses gears trained on other base weights (see
    :func:`read_gears_file`)."""
    theirs = payload.get('base_sha256')
    if theirs is None:
        print_log(
            f'gears file {path} records no base_sha256 (written before '
            'gears files named their base weights): it cannot be checked '
            'that these gears were trained on this base',
            logger='current',
            level=logging.WARNING,
        )
        return
    ours = bank.base_sha256()
    if theirs == ours:
        return
    trained_on = payload['meta'].get('base_checkpoint') or 'not recorded'
    message = (
        f'gears file {path} was trained on other base weights:\n'
        f'  gears trained on base sha256 {theirs} (file: {trained_on})\n'
        f"  this model's base sha256 {ours} (file: "
        f'{base_checkpoint or "unknown"})'
    )
    if not allow_other_base:
        raise ValueError(
            message + '\nLoad the base they were trained on, or pass '
            'allow_other_base=True (--cfg-options '
            'model.allow_other_base=True) to load them anyway.'
        )
    print_log(
        message + '\nLoaded anyway: allow_other_base=True.',
        logger='current',
        level=logging.WARNING,
    )
