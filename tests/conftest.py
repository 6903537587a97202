import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# The tests' models are tiny: one thread is as fast, and several threads
# spin-waiting on a shared 2-core machine are many times slower.
torch.set_num_threads(1)


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


@pytest.fixture(autouse=True)
def _autograd_left_enabled():
    """A test that leaves autograd off would break every later one."""
    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail('the test left autograd disabled', pytrace=False)
