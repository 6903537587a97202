"""The one atomic writer: every file the package writes goes through it."""

import contextlib
import io
import os
import tempfile
from typing import Union

import torch

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, data: Union[str, bytes]) -> str:
    """Write ``data`` to ``path`` through a temporary file and
    ``os.replace``, so readers never see a partial file.

    Args:
        path (str | PathLike): the destination; missing parent folders are
            created.
        data (str | bytes): the content; ``str`` is written as UTF-8.

    Returns:
        str: the destination path.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode('utf-8')
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f'.{os.path.basename(path)}.', suffix='.tmp'
    )
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj, path: PathLike) -> str:
    """``torch.save`` through :func:`atomic_write`: an interrupted run never
    leaves a half-written file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getvalue())
