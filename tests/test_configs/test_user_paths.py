"""A new user's run, scripted: the wheel and its console entry points, the
user's own mmseg config, the config mmengine dumped into the work dir, the
exported gear in stock mmseg without the plugin, and its ONNX file at N=2.

Everything runs outside the checkout: the wheel is installed in a scratch
venv (the fixtures of tests/test_packaging/test_wheel_install.py), the
config is the docs' "In your own project" snippet inheriting the packaged
configs through ``mmseg_gearnn::``, shrunk with the overrides of
tests/test_configs/user_configs.py (a tiny PSPNet on a few Cityscapes-
layout frames), and every step is a ``gearnn-*`` command.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_packaging.test_wheel_install import (  # noqa: F401 (fixtures)
    scratch_python,
    wheel,
)
from user_configs import (
    FAMILIES,
    REPO_ROOT,
    TINY_PSPNET,
    as_cli,
    cityscapes_layout,
    own_project_config,
    run_options,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

TIMEOUT = 600
MAX_ITERS = 2
SPACE = dict(distortions=dict(jpeg=[10, 5], brightness=[0.3]))
LEVEL = ('jpeg', '10')  # the gear to export

# Stock mmseg in a process where `import mmseg_gearnn` fails: the exported
# base config and gear build, load and predict a batch of two.
WITHOUT_PLUGIN = textwrap.dedent(
    """
    import json, sys
    sys.modules['mmseg_gearnn'] = None
    import torch
    from mmseg.apis import init_model

    config, checkpoint = sys.argv[1:3]
    model = init_model(config, checkpoint, device='cpu')
    seed = torch.Generator().manual_seed(0)
    inputs = torch.rand(2, 3, 32, 32, generator=seed) * 255
    metas = [dict(img_shape=(32, 32), ori_shape=(32, 32),
                  pad_shape=(32, 32))] * 2
    with torch.no_grad():
        logits = model.encode_decode(model.data_preprocessor(
            dict(inputs=list(inputs)), False)['inputs'], metas)
    print(json.dumps(dict(type=type(model).__name__,
                          shape=list(logits.shape))))
    """
)


def _command(python: Path, tool: str, *args, cwd: Path) -> str:
    """``gearnn-<tool> args`` from the scratch venv, outside the checkout;
    its output."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['PYTHONUNBUFFERED'] = '1'
    proc = subprocess.run(
        [str(python.parent / f'gearnn-{tool}'), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'gearnn-{tool}:\n{output[-4000:]}'
    return output


def _levels(work_dir: Path) -> dict:
    """The per-level metrics of the test run logged in ``work_dir``."""
    (scalars,) = work_dir.glob('*/*.json')
    metrics = json.loads(scalars.read_text().strip().splitlines()[-1])
    levels = {k: v for k, v in metrics.items() if k.endswith('mIoU')}
    assert len(levels) > 1, metrics
    return levels


@pytest.fixture(scope='module')
def user(scratch_python, tmp_path_factory) -> dict:  # noqa: F811
    """The user's project: the docs' own-project config (inheriting the
    packaged configs), frames in mmseg's Cityscapes layout, and a gear run
    of ``gearnn-train``."""
    root = tmp_path_factory.mktemp('user_project')
    config = own_project_config(root / 'my_pspnet_gears.py')
    # A wheel user inherits the packaged configs, not a checkout's, and
    # has a gear table of their own, its types not in alphabetical order
    # (the dumped config sorts them).
    text = config.read_text()
    assert f'{REPO_ROOT.as_posix()}/configs/' in text
    assert 'space=_base_.distortion_space' in text
    text = (
        text.replace(f'{REPO_ROOT.as_posix()}/configs/', 'mmseg_gearnn::')
        .replace('space=_base_.distortion_space', 'space=distortion_space')
        .replace(
            'model = dict(', f'distortion_space = {SPACE!r}\nmodel = dict(', 1
        )
    )
    config.write_text(text)
    data_root = cityscapes_layout(root / 'cityscapes')
    options = as_cli(
        {
            **FAMILIES['pspnet']['options'],
            **run_options(data_root, root / 'train', max_iters=MAX_ITERS),
            **TINY_PSPNET,
        }
    )
    output = _command(
        scratch_python, 'train', config, '--cfg-options', *options, cwd=root
    )
    return dict(
        python=scratch_python,
        root=root,
        config=config,
        options=options,
        output=output,
        checkpoint=root / 'train' / f'iter_{MAX_ITERS}.pth',
    )


def test_entry_point_trains_gears_on_the_own_mmseg_config(user):
    assert f'Iter(train) [{MAX_ITERS}/{MAX_ITERS}]' in user['output']
    assert (
        'RandomDistortion inserted after LoadImageFromFile' in (user['output'])
    )
    assert user['checkpoint'].is_file()
    assert (user['root'] / 'train' / user['config'].name).is_file()


def test_dumped_config_tests_the_same_per_level_miou(user):
    """``gearnn-test`` with the config mmengine dumped into the work dir
    (its keys sorted, so its distortion types in another order) scores
    every gear as the user's own config does."""
    test_options = [o for o in user['options'] if 'work_dir' not in o]
    own, dumped = user['root'] / 'test_own', user['root'] / 'test_dumped'
    _command(
        user['python'],
        'test',
        user['config'],
        user['checkpoint'],
        '--work-dir',
        own,
        '--cfg-options',
        *test_options,
        cwd=user['root'],
    )
    _command(
        user['python'],
        'test',
        user['root'] / 'train' / user['config'].name,
        user['checkpoint'],
        '--work-dir',
        dumped,
        cwd=user['root'],
    )
    own_levels = _levels(own)
    assert _levels(dumped) == own_levels


def test_export_runs_in_stock_mmseg_and_onnx_takes_two(user):
    """``gearnn-export --onnx``: stock mmseg, where importing
    ``mmseg_gearnn`` fails, loads the gear; the ONNX file takes N=2."""
    onnxruntime = pytest.importorskip('onnxruntime')
    out = user['root'] / 'export'
    output = _command(
        user['python'],
        'export',
        user['config'],
        user['checkpoint'],
        '--out-dir',
        out,
        '--level',
        *LEVEL,
        '--onnx',
        # PSPNet's pyramid pooling (1, 2, 3, 6) traces where the
        # features (1/8) divide by 6.
        '--onnx-shape',
        '48',
        '48',
        '--cfg-options',
        *[o for o in user['options'] if 'work_dir' not in o],
        cwd=user['root'],
    )
    assert 'base_config.py' in output
    (gear,) = out.glob('gear_*.pth')
    (onnx_file,) = out.glob('gear_*.onnx')

    proc = subprocess.run(
        [sys.executable, '-c', WITHOUT_PLUGIN, out / 'base_config.py', gear],
        cwd=user['root'],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['type'] == 'EncoderDecoder'
    assert result['shape'][0] == 2

    session = onnxruntime.InferenceSession(
        str(onnx_file), providers=['CPUExecutionProvider']
    )
    (name,) = [i.name for i in session.get_inputs()]
    inputs = np.random.default_rng(0).random((2, 3, 48, 48), np.float32)
    (logits,) = session.run(None, {name: inputs})
    assert logits.shape[0] == 2
