"""Where a benchmark's numbers come from: the code and the machine."""

import os
import os.path as osp
import platform
import subprocess

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


def machine() -> str:
    """A one-line description of this machine."""
    return (
        f'{platform.machine()} {platform.processor() or ""} '
        f'{os.cpu_count()} CPUs, {platform.system()} '
        f'{platform.release()}, Python {platform.python_version()}'
    ).replace('  ', ' ')
