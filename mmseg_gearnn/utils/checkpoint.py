# Copyright (c) OpenMMLab and mmseg_gearnn contributors. All rights reserved.
"""Weights-only loading of mmengine checkpoints.

torch >= 2.6 loads checkpoints with ``weights_only=True``: its unpickler
builds only tensors, plain containers and the globals on an allowlist, so a
checkpoint file cannot run code. mmengine 0.10.7 checkpoints also pickle the
message hub (``HistoryBuffer`` objects holding numpy arrays and scalars), so
``load_from``, ``resume`` and ``tools/test.py`` fail with ``UnpicklingError
... HistoryBuffer``.

Importing this module (``mmseg_gearnn`` does, and its configs'
``custom_imports`` import ``mmseg_gearnn``) fixes that without turning
``weights_only`` off:

1. :data:`MMENGINE_SAFE_GLOBALS`, exactly the globals that mmengine
   checkpoints need, is added to torch's allowlist
   (``torch.serialization.add_safe_globals``).
2. mmengine's loader for local files (the ``''`` prefix of
   ``CheckpointLoader``, used by ``Runner`` ``load_from`` / ``resume`` and by
   ``mmengine.runner.load_checkpoint``) is replaced by
   :func:`load_from_local_safely`, which passes ``weights_only=True``
   explicitly and turns torch's errors into ones that name the file.

Any other pickled global is refused with :class:`UnsafeCheckpointError`
before anything from the file runs.
"""

import os
import os.path as osp
import pickle
import re
import struct
import zipfile
from typing import Any, Callable, Dict, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

try:  # numpy >= 2.0
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray

__all__ = [
    'MMENGINE_SAFE_GLOBALS',
    'UnsafeCheckpointError',
    'load_checkpoint_safely',
    'load_from_local_safely',
    'register_safe_globals',
]

PathLike = Union[str, 'os.PathLike[str]']
MapLocation = Union[str, torch.device, Callable, Dict[str, str], None]

# The statistics that ``HistoryBuffer._set_default_statistics`` registers.
# ``HistoryBuffer.__getstate__`` pickles them as methods; pickle protocol 2
# (torch.save's) writes a method as ``getattr(HistoryBuffer, 'min')``.
_HISTORY_BUFFER_STATISTICS = frozenset(('min', 'max', 'current', 'mean'))
_GETATTR_REFUSED = 'mmseg_gearnn refused getattr'


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """``getattr`` restricted to the default statistics of HistoryBuffer.

    Stands in for ``builtins.getattr`` in weights-only loads: a general
    ``getattr`` would let a crafted file walk from any allowed object to
    arbitrary attributes (``getattr(getattr, '__self__')`` is the
    ``builtins`` module).

    Args:
        obj (Any): The object to read from; only ``HistoryBuffer``.
        name (str): The attribute; one of ``min``, ``max``, ``current``,
            ``mean``.

    Returns:
        Callable: The unbound ``HistoryBuffer`` method.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    if obj is not HistoryBuffer or name not in _HISTORY_BUFFER_STATISTICS:
        obj_name = (
            'getattr'
            if obj is _history_buffer_getattr
            else getattr(obj, '__qualname__', type(obj).__qualname__)
        )
        raise pickle.UnpicklingError(
            f'{_GETATTR_REFUSED}({obj_name}, {name!r}): only the default '
            'statistics of mmengine HistoryBuffer may be looked up'
        )
    return getattr(HistoryBuffer, name)


# Found with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on
# checkpoints that mmengine's Runner saved (optimizer, param schedulers,
# message hub, validation with ``save_best``) on numpy 2.x, plus the dtype
# classes that the unpickler builds without a GLOBAL opcode (torch refuses
# BUILD on a type that is not allowlisted). Tensors, OrderedDict, the
# optimizer and scheduler state (tensors, numbers, strings) and
# ``_codecs.encode`` are on torch's own allowlist.
MMENGINE_SAFE_GLOBALS: Tuple[Union[Callable, Tuple[Callable, str]], ...] = (
    # message_hub['log_scalars'] values: one buffer per logged scalar.
    HistoryBuffer,
    # HistoryBuffer.__getstate__ pickles its statistics methods through
    # ``getattr``; bound to a stand-in that allows nothing else.
    (_history_buffer_getattr, 'builtins.getattr'),
    # The buffers' ``_log_history`` / ``_count_history`` arrays.
    _np_multiarray._reconstruct,
    np.ndarray,
    # numpy scalars: runtime_info 'eta' (float64), 'best_score' (float32
    # from mmseg IoUMetric with CheckpointHook(save_best=...)).
    _np_multiarray.scalar,
    # dtype of those arrays and scalars, and its per-type classes that the
    # unpickler BUILDs: float64 logs, int64 counts, float32 best_score.
    np.dtype,
    type(np.dtype(np.float64)),
    type(np.dtype(np.int64)),
    type(np.dtype(np.float32)),
)

# The allowlist as torch names the globals in its files and messages.
_SAFE_GLOBAL_NAMES = frozenset(
    g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
    for g in MMENGINE_SAFE_GLOBALS
)


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint pickles globals that weights-only loading refuses.

    Subclasses :class:`pickle.UnpicklingError`, which torch raises in the
    same case, so existing handlers keep working.

    Args:
        filename (str): The checkpoint file.
        refused (list[str]): The refused globals, as ``module.name``.
        reason (str): torch's own reason, for the message.
    """

    def __init__(self, filename: str, refused: List[str], reason: str = ''):
        self.filename = filename
        self.refused = list(refused)
        names = ', '.join(self.refused) if self.refused else 'unknown'
        message = (
            f'Refused to load checkpoint {filename!r}: it pickles '
            f'globals or calls outside the weights-only allowlist: {names}. '
            'Nothing from the file was run; do not use it unless you know '
            'where it comes from. To proceed, load a checkpoint saved by '
            "mmengine's Runner, or re-save a trusted copy with only tensors "
            "and plain containers (e.g. {'state_dict': model.state_dict()}); "
            'only if you trust the file and each global above is a plain '
            'data type, allowlist exactly those with '
            'torch.serialization.add_safe_globals([...]) before loading '
            '(mmseg_gearnn.utils.MMENGINE_SAFE_GLOBALS lists the ones '
            'already allowed). Do not pass weights_only=False.'
        )
        if reason:
            message += f' (torch: {reason})'
        super().__init__(message)


def register_safe_globals() -> None:
    """Add :data:`MMENGINE_SAFE_GLOBALS` to torch's weights-only allowlist.

    Idempotent (torch keeps a set). Called when this module is imported.
    """
    torch.serialization.add_safe_globals(list(MMENGINE_SAFE_GLOBALS))


def _torch_reason(message: str) -> str:
    """Extract the unpickler's reason from torch's long error message.

    torch wraps it in advice that starts with re-running with
    ``weights_only=False``; only the reason itself is kept.
    """
    match = re.search(
        r'WeightsUnpickler error:\s*(.*?)(?:\n\nCheck the |$)', message, re.S
    )
    if match:
        return ' '.join(match.group(1).split())
    paragraphs = [
        p.strip()
        for p in message.split('\n\n')
        if p.strip()
        and 'Weights only load failed' not in p
        and not p.strip().startswith('Check the documentation')
    ]
    return ' '.join(' '.join(paragraphs).split()) or message.strip()


def _refused_globals(filename: str, reason: str) -> List[str]:
    """Name the globals of a checkpoint that weights-only loading refuses.

    A zip checkpoint (torch >= 1.6) is disassembled statically, which names
    all of them; for a legacy file, or where that fails, the one in torch's
    message is named.
    """
    refused: List[str] = []
    try:
        refused = torch.serialization.get_unsafe_globals_in_checkpoint(
            filename
        )
    except Exception:  # noqa: BLE001 - legacy or damaged file
        pass
    if not refused:
        refused = re.findall(r'GLOBAL (\S+?)(?:\s|$)', reason)
    refused += [
        f'builtins.getattr{args}'
        for args in re.findall(
            re.escape(_GETATTR_REFUSED) + r'(\([^)]*\))', reason
        )
    ]
    return sorted(set(refused) - _SAFE_GLOBAL_NAMES, key=refused.index)


def _safe_torch_load(filename: PathLike, map_location: MapLocation) -> Any:
    """``torch.load(weights_only=True)`` with errors that name the file."""
    filename = osp.expanduser(os.fspath(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint file not found: {filename!r}')
    register_safe_globals()
    try:
        # Explicit weights_only=True: it also wins over the environment
        # variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.
        return torch.load(
            filename, map_location=map_location, weights_only=True
        )
    except pickle.UnpicklingError as err:
        reason = _torch_reason(str(err))
        refused = _refused_globals(filename, reason)
        if refused:
            raise UnsafeCheckpointError(filename, refused, reason) from None
        raise ValueError(
            f'Cannot load checkpoint {filename!r} safely: it is truncated or '
            'corrupt, or uses pickle features that weights-only loading '
            f'refuses (torch: {reason})'
        ) from None
    except (
        RuntimeError,
        EOFError,
        KeyError,
        IndexError,
        ValueError,
        struct.error,
        UnicodeDecodeError,
        zipfile.BadZipFile,
    ) as err:
        raise ValueError(
            f'Cannot read checkpoint {filename!r}: is it truncated, corrupt '
            'or not a file saved by torch.save? '
            f'({type(err).__name__}: {err})'
        ) from err


def load_checkpoint_safely(
    path: PathLike, map_location: MapLocation = 'cpu'
) -> dict:
    """Load a checkpoint with ``weights_only=True`` and mmengine's globals.

    For code of the plugin that reads checkpoints itself (gear files,
    parameter selection); mmengine's own loading goes through
    :func:`load_from_local_safely`.

    Args:
        path (str | os.PathLike): A local checkpoint file.
        map_location (str | torch.device | Callable | dict, optional): As in
            :func:`torch.load`. Defaults to 'cpu'.

    Returns:
        dict: The checkpoint.

    Raises:
        FileNotFoundError: The file does not exist.
        UnsafeCheckpointError: The file pickles a global outside torch's
            allowlist and :data:`MMENGINE_SAFE_GLOBALS`.
        ValueError: The file is truncated, corrupt, not a torch checkpoint,
            or does not hold a dict.
    """
    checkpoint = _safe_torch_load(path, map_location)
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f'Checkpoint {os.fspath(path)!r} holds a '
            f'{type(checkpoint).__name__}, not a dict'
        )
    return checkpoint


def load_from_local_safely(filename: str, map_location: MapLocation) -> Any:
    """mmengine ``CheckpointLoader`` backend for local files.

    Same contract as ``mmengine.runner.checkpoint.load_from_local``, but the
    load is weights-only and fails with :class:`UnsafeCheckpointError` or a
    ``ValueError`` that names the file.

    Args:
        filename (str): Local checkpoint path (``~`` is expanded).
        map_location (str | torch.device | Callable | dict, optional): As in
            :func:`torch.load`.

    Returns:
        Any: What the file holds (a dict for mmengine checkpoints).
    """
    return _safe_torch_load(filename, map_location)


register_safe_globals()
# mmengine's load_from_local calls torch.load without weights_only, so the
# allowlist above is enough for it to succeed; it is replaced only so that a
# refused file fails with the file, the refused globals and a safe way on,
# instead of torch's advice to pass weights_only=False. force=True: the ''
# prefix is mmengine's own registration, there is no other way to override it.
CheckpointLoader.register_scheme(
    prefixes='', loader=load_from_local_safely, force=True
)
