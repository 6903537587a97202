"""Weights-only loading of mmengine checkpoints (mmseg_gearnn.utils).

Real checkpoints come from a real mmengine Runner (tiny mmseg
EncoderDecoder, 2 iterations, validation with ``save_best``), so the
allowlist is checked against what mmengine actually pickles.
"""

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.registry import init_default_scope
from mmengine.runner import CheckpointLoader, Runner, load_checkpoint
from toys import tiny_segmentor_source

from mmseg_gearnn.utils import (
    MMENGINE_SAFE_GLOBALS,
    UnsafeCheckpointError,
    load_checkpoint_safely,
)
from mmseg_gearnn.utils.checkpoint import load_from_local_safely

REPO_ROOT = Path(__file__).resolve().parents[2]
GEARNN_RUNTIME = REPO_ROOT / 'configs' / '_base_' / 'gearnn_runtime.py'

# A tiny mmseg EncoderDecoder on procedural 32x32 street scenes.
TINY_CONFIG = """
_base_ = [{runtime!r}, 'mmseg::_base_/default_runtime.py']
{model}train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='ProceduralStreetDataset', num_samples=4,
                 img_size=(32, 32), seed=0,
                 pipeline=[dict(type='PackSegInputs')]))
val_dataloader = dict(
    batch_size=1, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ProceduralStreetDataset', num_samples=2,
                 img_size=(32, 32), seed=1, test_mode=True,
                 pipeline=[dict(type='PackSegInputs')]))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=2,
         by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2,
                    save_optimizer=True, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
""".replace('{model}', tiny_segmentor_source())


def _cfg(path: Path, work_dir: Path, name: str) -> Config:
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(work_dir)
    # A distinct name per Runner: mmengine keys its MessageHub and logger
    # instances by it, and a shared hub would hide a failed resume.
    cfg.experiment_name = name
    return cfg


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> dict:
    """Runner 1: trains 2 iterations, validates, saves two checkpoints."""
    root = tmp_path_factory.mktemp('runner')
    config = root / 'fcn_tiny-r18_1xb2-2i_procedural-32x32.py'
    config.write_text(TINY_CONFIG.format(runtime=str(GEARNN_RUNTIME)))
    work_dir = root / 'train'
    runner = Runner.from_cfg(_cfg(config, work_dir, 'ckpt_train'))
    runner.train()
    iter_ckpt = work_dir / 'iter_2.pth'
    best_ckpt = work_dir / 'best_mIoU_iter_2.pth'
    assert iter_ckpt.is_file() and best_ckpt.is_file()
    return dict(
        root=root,
        config=config,
        work_dir=work_dir,
        iter_ckpt=iter_ckpt,
        best_ckpt=best_ckpt,
    )


@pytest.fixture
def without_our_allowlist():
    """Run with torch's allowlist minus MMENGINE_SAFE_GLOBALS; restore."""
    saved = torch.serialization.get_safe_globals()
    ours = set(MMENGINE_SAFE_GLOBALS)
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals([g for g in saved if g not in ours])
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


@pytest.fixture
def torch_load_calls(monkeypatch) -> list:
    """Record the ``weights_only`` argument of every ``torch.load``."""
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    return calls


def _assert_same_weights(state_dict: dict, ckpt: dict) -> None:
    expected = ckpt['state_dict']
    assert set(state_dict) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state_dict[key].cpu(), value), key


# (a) real checkpoints load weights-only, through every mmengine path


def test_checkpoints_hold_the_message_hub(trained):
    ckpt = load_checkpoint_safely(trained['iter_ckpt'])
    assert {
        'meta',
        'state_dict',
        'message_hub',
        'optimizer',
        'param_schedulers',
    } <= set(ckpt)
    loss = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer)
    assert len(loss.data[0]) == 2
    best = load_checkpoint_safely(trained['best_ckpt'])
    assert best['message_hub']['runtime_info']['best_score'] > 0


def test_allowlist_is_sufficient(trained):
    for path in (trained['iter_ckpt'], trained['best_ckpt']):
        assert (
            torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            == []
        )


@pytest.mark.usefixtures('without_our_allowlist')
def test_every_allowlist_entry_is_needed(trained):
    path = str(trained['best_ckpt'])
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(path, weights_only=True)
    for entry in MMENGINE_SAFE_GLOBALS:
        others = [g for g in MMENGINE_SAFE_GLOBALS if g is not entry]
        with torch.serialization.safe_globals(others):
            with pytest.raises(pickle.UnpicklingError):
                torch.load(path, weights_only=True)
    with torch.serialization.safe_globals(list(MMENGINE_SAFE_GLOBALS)):
        torch.load(path, weights_only=True)


def test_runner_load_from(trained, tmp_path, torch_load_calls):
    cfg = _cfg(trained['config'], tmp_path / 'load_from', 'ckpt_load_from')
    cfg.load_from = str(trained['iter_ckpt'])
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    assert torch_load_calls == [True]
    _assert_same_weights(
        runner.model.state_dict(), load_checkpoint_safely(trained['iter_ckpt'])
    )


class _StartIter(Hook):
    start_iter = None

    def before_train(self, runner) -> None:
        self.start_iter = runner.iter


def test_runner_resume_continues(trained, tmp_path, torch_load_calls):
    work_dir = tmp_path / 'resume'
    shutil.copytree(trained['work_dir'], work_dir)
    cfg = _cfg(trained['config'], work_dir, 'ckpt_resume')
    cfg.resume = True
    cfg.train_cfg.max_iters = 3
    runner = Runner.from_cfg(cfg)
    start = _StartIter()
    runner.register_hook(start)
    runner.train()
    assert torch_load_calls and all(w is True for w in torch_load_calls)
    assert start.start_iter == 2
    assert runner.iter == 3
    # The resumed message hub carries the 2 earlier losses.
    loss = runner.message_hub.get_scalar('train/loss')
    assert len(loss.data[0]) == 3


def test_mmengine_load_checkpoint(trained, torch_load_calls):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS

    cfg = Config.fromfile(str(trained['config']))
    model = MODELS.build(cfg.model)
    ckpt = load_checkpoint(model, str(trained['iter_ckpt']))
    assert torch_load_calls == [True]
    assert 'message_hub' in ckpt
    _assert_same_weights(model.state_dict(), ckpt)


def test_local_loader_is_registered():
    loader = CheckpointLoader._get_checkpoint_loader('work_dirs/x.pth')
    assert loader is load_from_local_safely
    # Other schemes keep mmengine's loaders.
    assert (
        CheckpointLoader._get_checkpoint_loader('https://x/y.pth')
        is not load_from_local_safely
    )


# (b) a checkpoint with any other global is refused, and nothing runs


def _write_marker(path: str) -> None:
    Path(path).write_text('payload ran')


class _MarkerOnLoad:
    """A custom class whose unpickling would write a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __setstate__(self, state: dict) -> None:
        _write_marker(state['marker'])
        self.__dict__.update(state)


class _SystemCall:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


class _GetattrEscape:
    """``getattr`` on an allowed class, towards anything but a statistic."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def _payloads(marker: Path):
    return {
        'custom_class': (
            _MarkerOnLoad(marker),
            f'{_MarkerOnLoad.__module__}._MarkerOnLoad',
        ),
        'os_system': (
            _SystemCall(marker),
            f'{os.system.__module__}.{os.system.__name__}',
        ),
        'getattr_escape': (
            _GetattrEscape(),
            "builtins.getattr(HistoryBuffer, '__init__')",
        ),
    }


def test_custom_class_payload_is_live(tmp_path):
    """Control: unpickled unsafely, the payload does write its marker."""
    marker = tmp_path / 'marker'
    pickle.loads(pickle.dumps(_MarkerOnLoad(marker), protocol=2))
    assert marker.exists()


@pytest.mark.faults
@pytest.mark.parametrize(
    'kind', ['custom_class', 'os_system', 'getattr_escape']
)
def test_malicious_checkpoint_is_refused(kind, tmp_path, monkeypatch):
    # Even with torch's opt-out set in the environment.
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'marker'
    payload, refused = _payloads(marker)[kind]
    path = tmp_path / f'{kind}.pth'
    torch.save(
        dict(state_dict=dict(w=torch.ones(2)), meta=dict(x=payload)), path
    )

    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_safely(path)
    message = str(info.value)
    assert repr(str(path)) in message
    assert refused in message
    assert 'add_safe_globals' in message
    assert info.value.filename == str(path)
    assert info.value.refused == [refused]
    assert isinstance(info.value, pickle.UnpicklingError)

    # The same refusal through mmengine's loading.
    with pytest.raises(UnsafeCheckpointError, match='Refused to load'):
        load_checkpoint(torch.nn.Linear(2, 2), str(path))
    assert not marker.exists()


@pytest.mark.faults
def test_legacy_format_payload_is_refused(tmp_path):
    marker = tmp_path / 'marker'
    path = tmp_path / 'legacy.pth'
    torch.save(
        dict(x=_MarkerOnLoad(marker)),
        path,
        _use_new_zipfile_serialization=False,
    )
    with pytest.raises(UnsafeCheckpointError, match='_MarkerOnLoad'):
        load_checkpoint_safely(path)
    assert not marker.exists()


# (c) missing and damaged files


@pytest.mark.faults
def test_missing_file(tmp_path):
    path = tmp_path / 'missing.pth'
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_checkpoint_safely(path)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        CheckpointLoader.load_checkpoint(str(path))


@pytest.mark.faults
@pytest.mark.parametrize('damage', ['truncated', 'empty', 'random', 'text'])
def test_corrupt_file(damage, trained, tmp_path):
    data = trained['iter_ckpt'].read_bytes()
    content = {
        'truncated': data[: len(data) // 2],
        'empty': b'',
        'random': bytes(range(256)) * 8,
        'text': b'not a checkpoint\n' * 4,
    }[damage]
    path = tmp_path / f'{damage}.pth'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f'{damage}.pth'):
        load_checkpoint_safely(path)
    with pytest.raises(ValueError, match=f'{damage}.pth'):
        load_checkpoint(torch.nn.Linear(2, 2), str(path))


@pytest.mark.faults
def test_non_dict_checkpoint(tmp_path):
    path = tmp_path / 'tensor.pth'
    torch.save(torch.ones(2), path)
    with pytest.raises(ValueError, match='not a dict'):
        load_checkpoint_safely(path)
