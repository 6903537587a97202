"""One launch line for the distributed tools: ``tools/dist_launch.sh``
holds the torchrun call; dist_train.sh, dist_test.sh and
dist_select_params.sh only place their arguments."""

import os
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / 'tools'
WRAPPERS = ('dist_train.sh', 'dist_test.sh', 'dist_select_params.sh')


def test_torchrun_is_called_in_one_place():
    launching = sorted(
        path.name
        for path in TOOLS.glob('*.sh')
        if 'torch.distributed.run' in path.read_text()
    )
    assert launching == ['dist_launch.sh']
    for name in WRAPPERS:
        assert 'dist_launch.sh' in (TOOLS / name).read_text(), name


@pytest.mark.faults
def test_a_config_path_with_a_space_reaches_the_tool(tmp_path):
    """The wrappers forward their arguments quoted (the three scripts
    split a config path at its spaces)."""
    words = tmp_path / 'words.sh'  # stands in for python: one word a line
    words.write_text('#!/bin/sh\nfor w in "$@"; do echo "[$w]"; done\n')
    words.chmod(0o755)
    proc = subprocess.run(
        ['bash', str(TOOLS / 'dist_test.sh'), 'my cfg.py', 'k.pth', '2'],
        env=dict(os.environ, PYTHON=str(words)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split('\n')
    tool = next(i for i, w in enumerate(lines) if w.endswith('test.py]'))
    assert lines[tool + 1 : tool + 5] == [
        '[my cfg.py]',
        '[k.pth]',
        '[--launcher]',
        '[pytorch]',
    ]
    assert '[--nproc_per_node=2]' in lines
