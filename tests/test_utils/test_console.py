"""The console for people (mmseg_gearnn.utils.console, ConsoleRunner):
mmengine's INFO goes to the work dir's log file, the console keeps the
stage lines, the progress and the warnings; ``verbose`` gives it all back.

Runs a real mmengine Runner (the tiny mmseg EncoderDecoder of
``test_checkpoint``: 2 iterations and a validation), and
``tools/select_params.py`` and ``tools/demo.py`` (shrunk to seconds) in
subprocesses.
"""

import ast
import io
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger, print_log
from mmengine.registry import init_default_scope
from mmengine.utils import package_utils
from mmseg.registry import MODELS, RUNNERS
from test_checkpoint import TINY_CONFIG  # the tiny Runner config of utils
from toys import tiny_segmentor, tiny_segmentor_source

from mmseg_gearnn.apis import train
from mmseg_gearnn.utils.console import (
    ProgressBar,
    keep_warnings_in,
    quiet_console,
    quiet_logger,
    say,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
GEARNN_RUNTIME = REPO_ROOT / 'configs' / '_base_' / 'gearnn_runtime.py'

# Lines mmengine logs at INFO while it builds and runs a Runner.
CHATTER = ('System environment:', 'Config:', 'Hooks will be executed')


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / 'fcn_tiny_2i_procedural-32x32.py'
    path.write_text(TINY_CONFIG.format(runtime=str(GEARNN_RUNTIME)))
    return path


def _train(config: Path, work_dir: Path, name: str) -> None:
    """Trains through the pipeline's runner (a ConsoleRunner)."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(config))
    # A distinct name per Runner: mmengine keys its loggers by it.
    cfg.experiment_name = name
    train(cfg, str(work_dir), reuse=False)


def _log_text(work_dir: Path) -> str:
    (log,) = work_dir.glob('*/*.log')
    return log.read_text()


def test_quiet_runner_logs_to_the_work_dir_only(tiny_config, tmp_path, capfd):
    work_dir = tmp_path / 'quiet'
    with quiet_console():
        _train(tiny_config, work_dir, 'console_quiet')
        MMLogger.get_current_instance().warning('a warning for people')
    out, err = capfd.readouterr()
    console = out + err
    for chatter in CHATTER:
        assert chatter not in console
    assert 'Iter(train)' not in console  # the LoggerHook's lines
    # The progress of training and validation, sparse off a terminal.
    assert 'train: 2/2' in err and 'val: 2/2' in err
    assert 'a warning for people' in console
    log = _log_text(work_dir)
    for chatter in CHATTER + ('Iter(train)', 'a warning for people'):
        assert chatter in log
    assert (work_dir / tiny_config.name).is_file()  # the dumped config
    assert (work_dir / 'iter_2.pth').is_file()


def test_verbose_gives_mmengine_console_back(tiny_config, tmp_path, capfd):
    work_dir = tmp_path / 'verbose'
    with quiet_console(verbose=True):
        _train(tiny_config, work_dir, 'console_verbose')
    out, err = capfd.readouterr()
    for chatter in CHATTER + ('Iter(train)',):
        assert chatter in out
    assert 'train: 2/2' not in err  # no bar beside mmengine's lines
    assert 'Config:' in _log_text(work_dir)


def test_console_runner_is_registered(tiny_config, tmp_path, capfd):
    """Selected by ``runner_type``, as a config would; quiet by default."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(tiny_config))
    cfg.merge_from_dict(
        dict(
            runner_type='ConsoleRunner',
            work_dir=str(tmp_path / 'registered'),
            experiment_name='console_registered',
        )
    )
    with quiet_console():
        runner = RUNNERS.build(cfg)
    assert type(runner).__name__ == 'ConsoleRunner'
    assert 'Config:' not in capfd.readouterr().out


def test_quiet_console_restores_the_logger():
    logger = MMLogger.get_instance('console_restore')
    (handler,) = [
        h for h in logger.handlers if type(h) is logging.StreamHandler
    ]
    assert handler.level == logging.INFO
    with quiet_console():
        quiet_logger(logger)
        assert handler.level == logging.WARNING
        with quiet_console(verbose=True):
            quiet_logger(logger)  # a verbose console changes nothing
            assert handler.level == logging.WARNING
    assert handler.level == logging.INFO


def test_plain_info_shows_bare_messages(capfd):
    logger = MMLogger.get_instance('console_plain')
    with quiet_console(plain_info=True):
        logger.info('a result for people')
        logger.warning('a warning, as mmengine has it')
    logger.info('after')
    out = capfd.readouterr().out.splitlines()
    assert out[0] == 'a result for people'
    assert out[1].endswith(
        ' - mmengine - WARNING - a warning, as mmengine has it'
    )
    assert out[2].endswith(' - mmengine - INFO - after')


def test_say_logs_and_shows(tmp_path, capfd):
    log_file = tmp_path / 'stage.log'
    with quiet_console(log_file=str(log_file)):
        say('[1/2] a stage for people')
    assert capfd.readouterr().out == '[1/2] a stage for people\n'
    assert '[1/2] a stage for people' in log_file.read_text()


def test_progress_bar_off_a_terminal_prints_quarters():
    stream = io.StringIO()
    bar = ProgressBar(100, 'train', stream=stream)
    for _ in range(100):
        bar.update(loss='0.5')
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(' (')[0] for line in lines] == [
        '  train: 25/100',
        '  train: 50/100',
        '  train: 75/100',
        '  train: 100/100',
    ]
    assert lines[-1].endswith(', loss 0.5)')


SPACE = dict(distortions=dict(brightness=[0.5, 0.2], jpeg=[10]))
SELECTION_CONFIG = """
_base_ = [{runtime!r}]
distortion_space = {space!r}
{model}train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='ProceduralStreetDataset', num_samples=2,
                 img_size=(32, 32), seed=0,
                 pipeline=[
                     dict(type='RandomDistortion', space=distortion_space),
                     dict(type='PackSegInputs',
                          meta_keys={{{{_base_.gearnn_meta_keys}}}})]))
"""


def _select_params(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    config = tmp_path / 'tiny_selection.py'
    config.write_text(
        SELECTION_CONFIG.replace('{model}', tiny_segmentor_source()).format(
            runtime=str(GEARNN_RUNTIME), space=SPACE
        )
    )
    checkpoint = tmp_path / 'base.pth'
    if not checkpoint.is_file():
        init_default_scope('mmseg')
        torch.manual_seed(0)
        model = MODELS.build(tiny_segmentor())
        torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    return subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / 'tools' / 'select_params.py'),
            str(config),
            *f'--checkpoint {checkpoint} --budget 0.02 --steps 1'.split(),
            *f'--device cpu --no-progress --out {tmp_path}/sel.json'.split(),
            *flags,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
    )


def test_select_params_console_is_plain(tmp_path):
    quiet = _select_params(tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    # The scores, the table and the file, as plain lines.
    lines = quiet.stdout.splitlines()
    assert lines[0].startswith('scored ')
    assert lines[1].startswith('adaptor selection: method=fisher')
    assert lines[-1] == f'selection written to {tmp_path}/sel.json'
    assert ' - mmengine - INFO - ' not in quiet.stdout + quiet.stderr
    verbose = _select_params(tmp_path, '--verbose')
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert ' - mmengine - INFO - adaptor selection' in verbose.stdout


# The demo shrunk to seconds: 2 iterations, a few frames.
TINY_DEMO = (
    'train_cfg.max_iters=2 train_cfg.val_interval=2 '
    'default_hooks.checkpoint.interval=2 '
    'train_dataloader.dataset.num_samples=8 '
    'val_dataloader.dataset.num_samples=2 '
    'test_dataloader.dataset.dataset.num_samples=2'
    + ''.join(
        f' {loader}.num_workers=0 {loader}.persistent_workers=False'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    )
).split()


# A warning as Python's warnings module prints it (and its source line).
PYTHON_WARNING = re.compile(r'\w+Warning: |warnings\.warn\(')
# Warnings that mmengine logs during a demo run (deprecations, and one
# about a metric's prefix).
THIRD_PARTY_NOTICES = ('"FileClient" will be deprecated', 'HardDiskBackend')


def test_demo_console_is_one_line_per_stage(tmp_path):
    work_dir = tmp_path / 'demo'
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / 'tools' / 'demo.py'),
            *f'--work-dir {work_dir} --selection-steps 1'.split(),
            '--base-options',
            *TINY_DEMO,
            '--gear-options',
            *TINY_DEMO,
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=600,
        # The demo's one thread whatever the environment says.
        env=dict(os.environ, OMP_NUM_THREADS='2'),
    )
    # Bytes: text mode would turn a bar's in-place '\r' into new lines.
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, err[-3000:]
    console = out + err
    stages = [line[:5] for line in out.splitlines() if line[:1] == '[']
    assert stages == ['[1/4]', '[2/4]', '[3/4]', '[4/4]']
    assert 'mIoU (%) per distortion type and level:' in out
    assert '| GearNN |' in out
    for chatter in CHATTER:
        assert chatter not in console
    # Warnings once each, progress at quarters: a page, not thousands.
    assert console.count('\n') < 60, console  # as `wc -l` counts
    for run in ('base', 'gears', 'eval_base', 'eval_gearnn'):
        assert 'Config:' in _log_text(work_dir / run)
    assert (work_dir / 'selection.log').is_file()
    # Third-party warnings (pkg_resources, mmseg's and mmengine's
    # deprecations) are in the work dir's log, none on the console (the
    # project's own warnings stay there).
    assert [
        line for line in console.splitlines() if PYTHON_WARNING.search(line)
    ] == []
    for notice in THIRD_PARTY_NOTICES:
        assert notice not in console
    notices = (work_dir / 'warnings.log').read_text()
    assert 'UserWarning: ' in notices and 'site-packages' in notices
    for notice in THIRD_PARTY_NOTICES:
        assert notice in notices
    assert f'third-party notices: {work_dir}/warnings.log' in out
    # Every bar, the selection's included, a line per quarter: no '\r'.
    assert '\r' not in console
    assert '  fisher: 12/12 (' in err, err  # 12 levels, a step each
    summary = json.loads((work_dir / 'summary.json').read_text())
    assert summary['reproducibility'] == dict(
        seed=0, deterministic=True, threads=1
    )


def test_selection_bar_is_the_console_bar():
    """The selection scorers' bar: quarters off a terminal, nothing when
    progress is off."""
    from mmseg_gearnn.selection.scorers import _progress

    bar = _progress(8, 'fisher', True)
    assert isinstance(bar, ProgressBar)
    stream = io.StringIO()
    off = ProgressBar(8, 'fisher', stream=stream, enabled=False)
    for _ in range(8):
        off.update()
    off.close()
    assert stream.getvalue() == ''


def test_progress_bar_off_a_terminal_short_run():
    """Two steps pass two quarters each: one line per step."""
    stream = io.StringIO()
    bar = ProgressBar(2, 'val', stream=stream)
    bar.update()
    bar.update()
    lines = stream.getvalue().splitlines()
    assert [line.split(' (')[0] for line in lines] == [
        '  val: 1/2',
        '  val: 2/2',
    ]


def test_each_warning_shows_once(capfd):
    loggers = [MMLogger.get_instance(f'console_warnings_{i}') for i in (1, 2)]
    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter('always')  # as after mmengine resets them
        warnings.showwarning = lambda message, *args, **kw: shown.append(
            str(message)
        )
        with quiet_console(), quiet_console():  # nested, as the pipeline's
            for logger in loggers:
                quiet_logger(logger)
                warnings.warn('a deprecation, once', UserWarning)
                logger.warning('a logged warning, once')
                logger.error('an error, always')
    assert shown == ['a deprecation, once']
    console = ''.join(capfd.readouterr())
    assert console.count('a logged warning, once') == 1
    assert console.count('an error, always') == 2


def _third_party_warning(message: str) -> None:
    """A warning raised from inside an installed package (mmengine)."""
    warnings.warn_explicit(
        message, UserWarning, package_utils.__file__, 1, module='mmengine'
    )


def test_third_party_warnings_go_to_the_work_dir(tmp_path, capfd):
    work_dir = tmp_path / 'bench'
    logger = MMLogger.get_instance('console_third_party')
    with warnings.catch_warnings():
        warnings.simplefilter('always')
        with quiet_console():
            _third_party_warning('a deprecation, held')  # before the file
            quiet_logger(logger)
            kept = keep_warnings_in(str(work_dir))
            _third_party_warning('a deprecation, after')
            logger.warning('an mmengine notice')  # logged from a test file
            print_log('a project warning', logger=logger, level=30)
            warnings.warn('a project UserWarning')
    console = ''.join(capfd.readouterr())
    assert kept == str(work_dir / 'warnings.log')
    notices = (work_dir / 'warnings.log').read_text()
    for held in ('a deprecation, held', 'a deprecation, after'):
        assert held in notices and held not in console
    # Not from an installed package: the console's.
    for shown in ('an mmengine notice', 'a project warning'):
        assert shown in console and shown not in notices
    assert 'a project UserWarning' not in notices
    assert keep_warnings_in(str(work_dir)) is None  # no quiet console


def test_mmengine_logged_warnings_go_to_the_log(tmp_path, capfd):
    """A WARNING that mmengine's own code logs (its deprecations) goes to
    the log; an error still shows."""
    from mmengine.fileio import FileClient

    log = tmp_path / 'warnings.log'
    logger = MMLogger.get_instance('console_file_client')  # now current
    with quiet_console(warnings_file=str(log)):
        quiet_logger(logger)
        FileClient(backend='disk')  # logs "FileClient will be deprecated"
    console = ''.join(capfd.readouterr())
    assert '"FileClient" will be deprecated' in log.read_text()
    assert 'FileClient' not in console


BENCHMARKS = sorted(
    p
    for p in (REPO_ROOT / 'benchmarks').glob('*.py')
    if "'--work-dir'" in p.read_text()
)


@pytest.mark.parametrize('script', BENCHMARKS, ids=lambda p: p.name)
def test_benchmarks_use_the_quiet_console(script):
    """Each benchmark with a work dir runs its main in a quiet console and
    keeps the third-party warnings in its work dir."""
    tree = ast.parse(script.read_text())
    (guard,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and '__main__' in ast.unparse(node.test)
    ]
    (with_,) = guard.body
    assert isinstance(with_, ast.With)
    assert ast.unparse(with_.items[0].context_expr) == 'quiet_console()'
    assert ast.unparse(with_.body[0]).startswith('main(')
    (main,) = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == 'main'
    ]
    assert 'keep_warnings_in(' in ast.unparse(main)
