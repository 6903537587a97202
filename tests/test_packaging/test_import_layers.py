"""The layers of the package (``.importlinter``): utils < distortions <
datasets < models < selection < evaluation < engine < apis < tools. A
module imports only from its own layer and the layers below, function-local
imports included, so an upward import (a circle hidden inside a function)
fails the test run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACT = REPO_ROOT / '.importlinter'
LINT_IMPORTS = Path(sys.executable).with_name('lint-imports')


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package found first under ``root``."""
    if not LINT_IMPORTS.is_file():
        pytest.fail(
            f'{LINT_IMPORTS} is missing: pip install import-linter (the '
            "'tests' extra of setup.py)"
        )
    return subprocess.run(
        [str(LINT_IMPORTS), str(CONTRACT), '--no-cache', '--no-logo'],
        cwd=root,
        env={**os.environ, 'PYTHONPATH': str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_import_goes_down_the_layers():
    proc = _lint(REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Contracts: 1 kept, 0 broken.' in proc.stdout


@pytest.mark.faults
def test_an_upward_import_breaks_the_contract(tmp_path):
    """A function-local import of models in utils (what
    utils/gear_config.py did) is named as the broken layer."""
    package = tmp_path / 'mmseg_gearnn'
    shutil.copytree(
        REPO_ROOT / 'mmseg_gearnn',
        package,
        ignore=shutil.ignore_patterns('__pycache__'),
    )
    with open(package / 'utils' / 'io.py', 'a') as f:
        f.write('\n\ndef _planted():\n    from ..models import GearBank\n')
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    broken = 'mmseg_gearnn.utils is not allowed to import mmseg_gearnn.models'
    assert broken in proc.stdout, proc.stdout
    assert 'mmseg_gearnn.utils.io -> mmseg_gearnn.models' in proc.stdout
