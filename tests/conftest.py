import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope='session')
def camvid_root() -> Path:
    """The real CamVid folder (``CAMVID_ROOT`` or ``../shared/data/camvid``);
    skips the test where it is absent."""
    root = Path(
        os.environ.get(
            'CAMVID_ROOT', REPO_ROOT.parent / 'shared' / 'data' / 'camvid'
        )
    )
    if not (root / 'val').is_dir():
        pytest.skip(f'CamVid not found at {root} (set CAMVID_ROOT)')
    return root
