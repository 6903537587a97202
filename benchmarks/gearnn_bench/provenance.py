"""Where a benchmark's numbers come from: the code and the machine.

A results file under ``benchmarks/results/`` comes from committed code:
:func:`record` gives the commit a run starts at and refuses a tree with
uncommitted changes (untracked files included) unless the run was given
``--allow-dirty``, which the results then record beside ``dirty``.
Results written elsewhere (smoke runs, tests) record the same fields and
are never refused.
"""

import argparse
import os
import os.path as osp
import platform
import subprocess
from typing import Dict, List, Optional

# The repository: configs and the results folder are found from here.
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RESULTS_DIR = osp.join(REPO_ROOT, 'benchmarks', 'results')


def git_commit(repo_dir: str) -> str:
    """HEAD of the repository at ``repo_dir`` (``-dirty`` when it has
    uncommitted changes), or ``'unknown'`` outside a git checkout."""
    try:
        head = subprocess.run(
            ['git', '-C', repo_dir, 'rev-parse', 'HEAD'],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ['git', '-C', repo_dir, 'status', '--porcelain', '-uno'],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return head + ('-dirty' if dirty else '')


class DirtyTreeError(SystemExit):
    """A run that would write committed results from uncommitted code.

    A ``SystemExit``, so a benchmark script stops with its message alone.
    """


def tree_changes(repo_dir: str) -> Optional[List[str]]:
    """``git status --porcelain`` lines of the repository at ``repo_dir``
    (changed, staged and untracked paths; ignored ones are not listed), or
    ``None`` outside a git checkout."""
    try:
        status = subprocess.run(
            ['git', '-C', repo_dir, 'status', '--porcelain'],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [line for line in status.splitlines() if line.strip()]


def add_allow_dirty(parser: argparse.ArgumentParser) -> None:
    """The ``--allow-dirty`` flag every results writer takes."""
    parser.add_argument(
        '--allow-dirty',
        action='store_true',
        help='write results into benchmarks/results/ although the tree has '
        'uncommitted changes (recorded as allow_dirty in the results)',
    )


def record(
    out_path: str, allow_dirty: bool = False, repo_dir: str = REPO_ROOT
) -> Dict[str, object]:
    """``commit``, ``dirty`` and ``allow_dirty`` for a results file about to
    be written to ``out_path``, checked before the run starts.

    Raises :class:`DirtyTreeError` when ``out_path`` lies under
    ``benchmarks/results/``, the tree has uncommitted changes and
    ``allow_dirty`` is false.
    """
    changes = tree_changes(repo_dir)
    commit = git_commit(repo_dir).removesuffix('-dirty')
    dirty = None if changes is None else bool(changes)
    results = osp.realpath(osp.join(repo_dir, 'benchmarks', 'results'))
    committed = osp.realpath(out_path).startswith(results + os.sep)
    if dirty and committed and not allow_dirty:
        shown = ', '.join(line[3:] for line in changes[:5])
        more = f' and {len(changes) - 5} more' if len(changes) > 5 else ''
        raise DirtyTreeError(
            f'refusing to write {osp.relpath(out_path, repo_dir)}: the tree '
            f'at {repo_dir} has uncommitted changes ({shown}{more}). Commit '
            'them so the results name the code they came from, or pass '
            '--allow-dirty (recorded in the results).'
        )
    return dict(commit=commit, dirty=dirty, allow_dirty=allow_dirty)


def machine() -> str:
    """A one-line description of this machine."""
    return (
        f'{platform.machine()} {platform.processor() or ""} '
        f'{os.cpu_count()} CPUs, {platform.system()} '
        f'{platform.release()}, Python {platform.python_version()}'
    ).replace('  ', ' ')
