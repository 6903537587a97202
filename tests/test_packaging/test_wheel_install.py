"""A non-editable install is a working plugin with its configs.

The wheel is built from a copy of the checkout and installed into a scratch
venv that reuses this environment's packages (mmseg, mmengine, torch) through
a ``.pth`` file but not the checkout: the check runs in isolated mode from a
folder outside it, so the plugin can only come from the wheel.
"""

import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

# What a build never reads: VCS, environments, runs, caches, checkpoints.
NOT_BUILD_INPUT = shutil.ignore_patterns(
    '.git',
    '.venv',
    'work_dirs',
    'data',
    'build',
    'dist',
    '*.egg-info',
    '__pycache__',
    '*.pyc',
    '.pytest_cache',
    '.ruff_cache',
    '*.pth',
)
PIP = [sys.executable, '-m', 'pip']
SITE_DIRS = ('site-packages', 'dist-packages')
PRINT_PURELIB = 'import sysconfig; print(sysconfig.get_path("purelib"))'
# The console entry points: the tools of the checkout's tools/ folder.
ENTRY_POINTS = {
    'gearnn-train': 'train',
    'gearnn-test': 'test',
    'gearnn-select': 'select_params',
    'gearnn-export': 'export_gear',
    'gearnn-infer': 'infer',
    'gearnn-robustness': 'robustness',
    'gearnn-train-estimator': 'train_estimator',
    'gearnn-class-weights': 'class_weights',
    'gearnn-demo': 'demo',
}
TINY_CONFIG = (
    'gearnn/gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-96x128.py'
)

# Run by the scratch venv's interpreter: argv = folder for user configs, then
# packaged config names. Prints one JSON line.
SCRATCH_CHECK = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    import mmseg_gearnn
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import get_installed_path
    from mmseg.registry import MODELS

    user_dir, names = Path(sys.argv[1]), sys.argv[2:]
    loaded = {}
    for i, name in enumerate(names):
        user_cfg = user_dir / f'user_{i}.py'
        user_cfg.write_text(f"_base_ = ['mmseg_gearnn::{name}']\\n")
        cfg = Config.fromfile(str(user_cfg))
        loaded[name] = cfg.model.type
    cfg = Config.fromfile(str(user_dir / 'user_tiny.py'))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    print(json.dumps(dict(
        plugin=mmseg_gearnn.__file__,
        installed_path=get_installed_path('mmseg_gearnn'),
        custom_imports=cfg.custom_imports['imports'],
        loaded=loaded,
        model=type(model).__name__,
        default_gear=model.default_gear,
    )))
    """
)


# Run by the scratch venv's interpreter: loads every console entry point of
# the installed distribution; prints one JSON line.
LOAD_ENTRY_POINTS = textwrap.dedent(
    """
    import json
    import os.path as osp
    from importlib.metadata import entry_points

    loaded = {}
    for ep in entry_points(group='console_scripts'):
        if ep.name.startswith('gearnn-'):
            main = ep.load()
            loaded[ep.name] = main.__module__
    from mmseg_gearnn.tools import demo

    gear_config = demo.parse_args([]).gear_config
    print(json.dumps(dict(
        loaded=loaded,
        demo_configs=[demo.CONFIGS, osp.isfile(gear_config)],
    )))
    """
)


def _run(cmd, **kwargs) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, (
        f'{" ".join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}'
    )
    return proc.stdout


@pytest.fixture(scope='module')
def wheel(repo_root, tmp_path_factory) -> Path:
    """The wheel `pip install .` would install, built from a copy of the
    checkout so that no build folder lands in it."""
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    shutil.copytree(repo_root, src, ignore=NOT_BUILD_INPUT)
    pip_wheel = 'wheel --no-deps --no-build-isolation --no-index -q'.split()
    _run([*PIP, *pip_wheel, '-w', tmp / 'dist', src])
    (built,) = (tmp / 'dist').glob('mmseg_gearnn-*.whl')
    return built


@pytest.fixture(scope='module')
def scratch_python(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed and this environment's packages
    (but not its editable ``mmseg_gearnn``) importable."""
    env = tmp_path_factory.mktemp('scratch') / 'venv'
    _run([sys.executable, '-m', 'venv', '--without-pip', env])
    python = env / 'bin' / 'python'
    # Install before the .pth exists: pip then sees only the scratch venv
    # and cannot touch this environment's editable install.
    pip_install = 'install --no-deps --no-index --no-compile -q'.split()
    _run([*PIP, '--python', python, *pip_install, wheel])
    site = _run([python, '-I', '-c', PRINT_PURELIB]).strip()
    # This environment's package folders; a path line in a .pth adds the
    # folder without running the .pth files in it, so the editable finder of
    # the checkout stays out.
    dep_dirs = [p for p in sys.path if p.endswith(SITE_DIRS)]
    (Path(site) / 'project_env.pth').write_text('\n'.join(dep_dirs))
    return python


def test_wheel_ships_configs_and_license(wheel, repo_root):
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        dist_info = next(n.split('/')[0] for n in names if '.dist-info/' in n)
        metadata = HeaderParser().parsestr(
            whl.read(f'{dist_info}/METADATA').decode()
        )
        license_files = [n for n in names if n.endswith('/LICENSE')]
        shipped_license = whl.read(license_files[0]) if license_files else b''

    configs = sorted(
        p.relative_to(repo_root).as_posix()
        for p in (repo_root / 'configs').rglob('*.py')
    )
    missing = [c for c in configs if f'mmseg_gearnn/.mim/{c}' not in names]
    assert not missing, f'configs missing from the wheel: {missing}'
    assert 'mmseg_gearnn/.mim/model-index.yml' in names
    assert not [n for n in names if n.split('/')[0] in ('tests', 'tools')]

    license_text = (repo_root / 'LICENSE').read_text()
    assert shipped_license.decode() == license_text
    assert 'Apache License' in license_text
    assert 'Version 2.0' in license_text
    assert metadata['License'] == 'Apache License 2.0'


def test_user_config_inherits_packaged_config(scratch_python, tmp_path):
    """Outside the checkout, a user config inherits packaged configs through
    the ``mmseg_gearnn::`` scope, and the model builds through mmseg."""
    venv = scratch_python.parents[1].resolve()
    user_dir = tmp_path / 'user_project'
    user_dir.mkdir()
    (user_dir / 'user_tiny.py').write_text(
        f"_base_ = ['mmseg_gearnn::{TINY_CONFIG}']\n"
        'model = dict(default_gear=1)\n'
    )
    check = tmp_path / 'check.py'
    check.write_text(SCRATCH_CHECK)
    names = [TINY_CONFIG, 'gearnn/deeplabv3_cityscapes.py']
    # -I: neither PYTHONPATH nor the working folder reaches sys.path.
    out = _run([scratch_python, '-I', check, user_dir, *names], cwd=user_dir)
    result = json.loads(out.strip().splitlines()[-1])

    # The plugin and its configs come from the wheel, not the checkout.
    for path in (result['plugin'], result['installed_path']):
        assert Path(path).resolve().is_relative_to(venv), path
    assert result['custom_imports'] == ['mmseg_gearnn']
    assert result['loaded'] == {
        TINY_CONFIG: 'GearNNSegmentor',
        'gearnn/deeplabv3_cityscapes.py': 'DistilledGearNNSegmentor',
    }
    assert result['model'] == 'GearNNSegmentor'
    assert result['default_gear'] == 1


def test_wheel_ships_the_tools_as_entry_points(wheel, repo_root):
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        dist_info = next(n.split('/')[0] for n in names if '.dist-info/' in n)
        entry_points = whl.read(f'{dist_info}/entry_points.txt').decode()
    for name, module in ENTRY_POINTS.items():
        assert f'mmseg_gearnn/tools/{module}.py' in names
        assert f'{name} = mmseg_gearnn.tools.{module}:main' in entry_points
    # Every tool a user runs (each tools/*.py) is an entry point.
    tools = {p.stem for p in (repo_root / 'tools').glob('*.py')}
    assert tools == set(ENTRY_POINTS.values())


def test_entry_points_run_from_the_wheel(scratch_python, tmp_path):
    """The entry points load from the wheel (the demo finds its packaged
    configs), and ``gearnn-test`` and ``python -m mmseg_gearnn.tools.test``
    run outside the checkout."""
    venv = scratch_python.parents[1].resolve()
    check = tmp_path / 'entry_points.py'
    check.write_text(LOAD_ENTRY_POINTS)
    out = _run([scratch_python, '-I', check], cwd=tmp_path)
    result = json.loads(out.strip().splitlines()[-1])
    assert result['loaded'] == {
        name: f'mmseg_gearnn.tools.{module}'
        for name, module in ENTRY_POINTS.items()
    }
    demo_configs, gear_config_found = result['demo_configs']
    assert Path(demo_configs).resolve().is_relative_to(venv)
    assert gear_config_found

    usage = _run([venv / 'bin' / 'gearnn-test', '--help'], cwd=tmp_path)
    assert usage.startswith('usage: gearnn-test')
    assert '--show-interval' in usage and '--debug' in usage
    usage = _run(
        [scratch_python, '-I', '-m', 'mmseg_gearnn.tools.test', '--help'],
        cwd=tmp_path,
    )
    assert 'checkpoint' in usage and '--debug' in usage
