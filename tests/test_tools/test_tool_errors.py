"""A user's mistake in a tool is one line, found before the model is built.

The flagship's first run without Cityscapes and without network, a missing
checkpoint, ``--debug``, the nearest distortion type and the routing
policies ``tools/infer.py`` accepts. Nothing here downloads: URLs point at
a local port that nothing listens on.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.runner import CheckpointLoader

from mmseg_gearnn.distortions import DistortionSpace
from mmseg_gearnn.models.routing import ROUTING_POLICIES
from mmseg_gearnn.tools import infer
from mmseg_gearnn.utils.user_errors import (
    check_checkpoint,
    checkpoint_cache_path,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
FLAGSHIP = REPO_ROOT / 'configs' / 'gearnn' / 'deeplabv3_cityscapes.py'
TINY = (
    REPO_ROOT
    / 'configs'
    / 'gearnn'
    / 'gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-96x128.py'
)
TIMEOUT = 300

pytestmark = pytest.mark.faults


def _closed_port() -> int:
    """A local port nothing listens on: a connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _run(tool: str, *args, cwd: Path, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(TOOLS / f'{tool}.py'), *map(str, args)],
        cwd=cwd,
        env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    proc.output = proc.stdout + proc.stderr
    return proc


def _error_line(proc, tool: str) -> str:
    """The one error line, checked to be the whole of what went wrong."""
    assert proc.returncode == 1, proc.output[-3000:]
    assert 'Traceback' not in proc.output, proc.output[-3000:]
    errors = [line for line in proc.stderr.splitlines() if ': error: ' in line]
    assert len(errors) == 1, proc.output[-3000:]
    assert errors[0].startswith(f'{tool}: error: ')
    return errors[0]


def test_flagship_without_data_names_the_layout_and_the_flag(tmp_path):
    proc = _run('train', FLAGSHIP, '--work-dir', tmp_path / 'w', cwd=tmp_path)
    line = _error_line(proc, 'train')
    assert 'train_dataloader.dataset (CityscapesDataset)' in line
    assert 'data/cityscapes/leftImg8bit/train/' in line
    assert 'data/cityscapes/gtFine/train/' in line
    assert '--data-root DIR' in line
    assert '--cfg-options train_dataloader.dataset.data_root=DIR' in line
    # Reported before anything is built: a few lines, not the config dump.
    assert len(proc.output.splitlines()) < 20, proc.output[-3000:]
    assert not (tmp_path / 'w').exists()


def _cityscapes_folders(root: Path) -> Path:
    for split in ('train', 'val'):
        for kind in ('leftImg8bit', 'gtFine'):
            (root / kind / split).mkdir(parents=True)
    return root


def test_flagship_without_network_names_url_cache_and_load_from(tmp_path):
    data_root = _cityscapes_folders(tmp_path / 'cityscapes')
    url = f'http://127.0.0.1:{_closed_port()}/released_base.pth'
    proc = _run(
        'train',
        FLAGSHIP,
        '--work-dir',
        tmp_path / 'w',
        '--data-root',
        data_root,
        '--cfg-options',
        f'load_from={url}',
        cwd=tmp_path,
        env=dict(TORCH_HOME=str(tmp_path / 'torch')),
    )
    line = _error_line(proc, 'train')
    cache = tmp_path / 'torch' / 'hub' / 'checkpoints' / 'released_base.pth'
    assert f'load_from: cannot download {url}' in line
    assert f'download it to {cache}' in line
    assert '--cfg-options load_from=BASE.pth' in line
    assert not (tmp_path / 'w').exists()


def test_the_cache_path_named_is_where_mmengine_reads(tmp_path, monkeypatch):
    """A checkpoint put where the message says loads without network."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    url = f'http://127.0.0.1:{_closed_port()}/base.pth'
    with pytest.raises(ConnectionError, match='cannot download'):
        check_checkpoint(url, 'load_from')
    cache = Path(checkpoint_cache_path(url))
    cache.parent.mkdir(parents=True)
    torch.save({'state_dict': {'w': torch.ones(2)}}, cache)
    check_checkpoint(url, 'load_from')  # found: nothing to say
    loaded = CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


def test_missing_checkpoint_is_reported_before_the_model_is_built(tmp_path):
    missing = tmp_path / 'missing.pth'
    proc = _run(
        'test', TINY, missing, '--work-dir', tmp_path / 'w', cwd=tmp_path
    )
    line = _error_line(proc, 'test')
    assert f"checkpoint '{missing}': no such file" in line
    assert '--debug shows the traceback' in line
    # The runner (which makes the work dir) was never built.
    assert not (tmp_path / 'w').exists()


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / 'missing.pth'
    proc = _run('test', TINY, missing, '--debug', cwd=tmp_path)
    assert proc.returncode != 0
    assert 'Traceback' in proc.stderr
    assert 'FileNotFoundError' in proc.stderr


def test_unknown_distortion_type_names_the_nearest():
    with pytest.raises(ValueError, match=r"'jpg' \(did you mean 'jpeg'\?\)"):
        DistortionSpace(dict(jpg=[10]))
    space = DistortionSpace(dict(jpeg=[10], brightness=[0.2]))
    with pytest.raises(ValueError, match="did you mean 'brightness'"):
        space.levels('brightnes')


@pytest.mark.parametrize('policy', sorted(ROUTING_POLICIES))
def test_infer_accepts_every_routing_policy(policy):
    args = infer.parse_args(
        [
            'c.py',
            'k.pth',
            '--input',
            'i',
            '--out-dir',
            'o',
            '--routing',
            policy,
        ]
    )
    assert args.routing == policy


def test_infer_refuses_an_unknown_routing_policy(capsys):
    with pytest.raises(SystemExit):
        infer.parse_args(
            [
                'c.py',
                'k.pth',
                '--input',
                'i',
                '--out-dir',
                'o',
                '--routing',
                'x',
            ]
        )
    assert 'invalid choice' in capsys.readouterr().err
