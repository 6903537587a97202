"""Errors a user can fix, told in one line.

A tool runs its work inside :func:`one_line_errors`: a missing file, an
unknown name or a bad value ends it with ``<prog>: error: <what>`` instead
of a traceback (``--debug``, added by :func:`add_debug_flag`, shows the
traceback). The checks a tool makes before it builds a model, so that bad
input is reported before minutes of work, are here too:
:func:`check_file`, :func:`check_checkpoint` and :func:`check_data_roots`.
:func:`did_you_mean` names the known name nearest to an unknown one.
"""

import argparse
import difflib
import os
import os.path as osp
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Iterable, Iterator, List, Optional, Sequence
from urllib.parse import urlparse

# What a user's input raises: a bad value or name (ValueError, KeyError,
# TypeError from a config's arguments), a missing or unreadable file or an
# unreachable URL (OSError), and what a wrong checkpoint raises in torch
# (RuntimeError).
USER_ERRORS = (ValueError, KeyError, TypeError, OSError, RuntimeError)
URL_SCHEMES = ('http://', 'https://')
# Seconds to wait for a checkpoint URL to answer before saying so.
URL_TIMEOUT = 10


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'y'?)"`` for the known name closest to an unknown
    ``name`` (difflib), ``''`` where none is close: the tail of an
    "unknown name" message."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], 1)
    return f" (did you mean '{close[0]}'?)" if close else ''


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug``: the traceback of an error instead of its one line."""
    parser.add_argument(
        '--debug',
        action='store_true',
        help='show the traceback of an error instead of its one line',
    )


# The longest message shown whole; a longer one (a library's, holding e.g. a
# traced graph) keeps its start and its end.
MAX_MESSAGE = 800


def _message(err: BaseException) -> str:
    # A KeyError's str() is the repr of its argument.
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else ''
    text = ' '.join((text or str(err) or type(err).__name__).split())
    if len(text) > MAX_MESSAGE:
        text = f'{text[: MAX_MESSAGE // 2]} [...] {text[-MAX_MESSAGE // 4 :]}'
    return text


def program_name() -> str:
    """The name the user ran: ``gearnn-test``, ``test`` for
    ``tools/test.py`` or ``python -m mmseg_gearnn.tools.test``."""
    return osp.splitext(osp.basename(sys.argv[0] or 'gearnn'))[0]


@contextmanager
def one_line_errors(
    debug: bool = False, prog: Optional[str] = None
) -> Iterator[None]:
    """Ends the process with ``{prog}: error: {message}`` (status 1) on
    an error of :data:`USER_ERRORS`; with ``debug`` the error propagates
    with its traceback.

    Args:
        debug (bool): let errors propagate (``--debug``).
        prog (str, optional): the tool's name in the line; default
            :func:`program_name`.
    """
    try:
        yield
    except USER_ERRORS as err:
        if debug:
            raise
        print(
            f'{prog or program_name()}: error: {_message(err)} '
            '(--debug shows the traceback)',
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1) from None


def check_file(path: Optional[str], what: str) -> None:
    """Raises FileNotFoundError naming ``what`` if ``path`` is given and
    is not a file."""
    if path is not None and not osp.isfile(path):
        raise FileNotFoundError(f'{what} {path!r}: no such file')


def checkpoint_cache_path(url: str) -> str:
    """Where mmengine keeps (and first looks for) a checkpoint it
    downloads from ``url``: torch hub's ``checkpoints`` folder."""
    import torch.hub

    name = osp.basename(urlparse(url).path)
    return osp.join(torch.hub.get_dir(), 'checkpoints', name)


def check_checkpoint(path: Optional[str], what: str = 'checkpoint') -> None:
    """Fails before any model is built where the checkpoint cannot be
    read: a local file that is missing, or a URL that is neither in
    mmengine's download cache nor answering (nothing is downloaded here).

    Args:
        path (str, optional): a file or an http(s) URL; None checks
            nothing.
        what (str): its name in the message (``'load_from'``, the flag).
    """
    if path is None:
        return
    path = str(path)
    if not path.startswith(URL_SCHEMES):
        if '://' not in path:  # other backends (s3://, ...) read it
            check_file(path, what)
        return
    cache = checkpoint_cache_path(path)
    if osp.isfile(cache):
        return
    try:
        request = urllib.request.Request(path, method='HEAD')
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT):
            pass
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, 'reason', None) or err
        raise ConnectionError(
            f'{what}: cannot download {path} ({reason}); download it to '
            f'{cache} (where mmengine looks first), or give a local copy '
            'with --cfg-options load_from=BASE.pth'
        ) from err


def _prefixes(dataset: dict) -> List[str]:
    prefix = dataset.get('data_prefix') or {}
    if not isinstance(prefix, dict):
        return []
    return [
        prefix[key]
        for key in ('img_path', 'seg_map_path')
        if isinstance(prefix.get(key), str)
    ]


def _missing_in(dataset, key: str) -> Optional[str]:
    """The first file-reading dataset (wrappers searched) under ``key``
    whose folders are missing, as one message."""
    if not isinstance(dataset, dict):
        return None
    found = _missing_in(dataset.get('dataset'), f'{key}.dataset')
    if found:
        return found
    for i, inner in enumerate(dataset.get('datasets', None) or []):
        found = _missing_in(inner, f'{key}.datasets.{i}')
        if found:
            return found
    root = dataset.get('data_root')
    if not isinstance(root, str) or '://' in root:
        return None
    folders = [osp.join(root, p) for p in _prefixes(dataset)] or [root]
    missing = [f for f in folders if not osp.isdir(f)]
    ann_file = dataset.get('ann_file')
    if isinstance(ann_file, str) and ann_file:
        ann_path = (
            ann_file if osp.isabs(ann_file) else osp.join(root, ann_file)
        )
        if not osp.isfile(ann_path):
            missing.append(ann_path)
    if not missing:
        return None
    expected = ' and '.join(
        osp.join(root, p) + os.sep for p in _prefixes(dataset)
    )
    layout = f' (expected: {expected})' if expected else ''
    return (
        f'{key} ({dataset.get("type", "dataset")}): {missing[0]} does not '
        f'exist{layout}; give the dataset folder with --data-root DIR or '
        f'--cfg-options {key}.data_root=DIR'
    )


def check_data_roots(cfg, dataloaders: Sequence[str]) -> None:
    """Fails before any model is built where a dataloader's dataset reads
    from folders that do not exist, naming the expected layout and how to
    point the config at the data.

    Raises:
        FileNotFoundError: for the first dataloader with a missing folder.
    """
    for name in dataloaders:
        loader = cfg.get(name, None)
        if not loader:
            continue
        message = _missing_in(loader.get('dataset'), f'{name}.dataset')
        if message:
            raise FileNotFoundError(message)
