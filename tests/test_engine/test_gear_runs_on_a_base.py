"""Gear runs under mmengine's Runner start from a filled base: a
``gears_file=`` is loaded once ``load_from`` has filled the base (training
and ``Runner.test`` alike), and gears never train on random weights unless
the model opts in (``allow_random_base=True``)."""

import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import load_checkpoint
from mmseg.registry import MODELS
from toys import tiny_segmentor

import mmseg_gearnn  # noqa: F401

SPACE = dict(distortions=dict(jpeg=[30, 10], brightness=[0.3]))
SEGMENTOR = tiny_segmentor((32, 32), num_classes=8)
META_KEYS = ('img_shape', 'ori_shape', 'pad_shape', 'distortion')
DEMO_CONFIG = str(
    Path(__file__).resolve().parents[2]
    / 'configs'
    / 'gearnn'
    / 'gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-96x128.py'
)


def procedural(num_samples, transform, seed=0):
    return dict(
        type='ProceduralStreetDataset',
        num_samples=num_samples,
        img_size=(32, 32),
        seed=seed,
        pipeline=[transform, dict(type='PackSegInputs', meta_keys=META_KEYS)],
    )


@pytest.fixture(scope='module')
def base_and_gears(tmp_path_factory):
    """A base checkpoint (not the init weights) and a gears file trained,
    in effect, on it: every gear's tensors moved away from the base."""
    root = tmp_path_factory.mktemp('base')
    init_default_scope('mmseg')
    torch.manual_seed(1)
    bare = MODELS.build(ConfigDict(copy.deepcopy(SEGMENTOR)))
    bare.init_weights()
    with torch.no_grad():
        for t in bare.state_dict().values():
            if t.is_floating_point():
                t.add_(0.05)
    base = str(root / 'base.pth')
    torch.save(dict(state_dict=bare.state_dict()), base)
    model = MODELS.build(
        ConfigDict(type='GearNNSegmentor', segmentor=SEGMENTOR, space=SPACE)
    )
    load_checkpoint(model, base, map_location='cpu')
    with torch.no_grad():
        for gear in (1, 2, 3):
            for t in model.gear_bank.tensors(gear).values():
                if t.is_floating_point():
                    t.add_(gear)
    gears = str(root / 'gears.pth')
    model.save_gears(gears)
    expected = {g: model.gear_bank.tensors(g) for g in (1, 2, 3)}
    return base, gears, expected


def assert_gears(model, expected):
    for gear, tensors in expected.items():
        held = model.gear_bank.tensors(gear)
        for name, t in tensors.items():
            assert torch.equal(held[name], t), (gear, name)


class GearsAtStart(Hook):
    """Keeps a copy of every gear's tensors when training starts."""

    def before_train(self, runner):
        bank = runner.model.gear_bank
        runner.gears_at_start = {
            g: {n: t.clone() for n, t in bank.tensors(g).items()}
            for g in range(1, bank.num_gears)
        }


def make_runner(work_dir, model_options, **kwargs):
    model = dict(
        type='GearNNSegmentor',
        segmentor=copy.deepcopy(SEGMENTOR),
        space=SPACE,
        **model_options,
    )
    return Runner(
        model=model,
        work_dir=str(work_dir),
        train_dataloader=dict(
            batch_size=2,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=procedural(
                4,
                dict(
                    type='RandomDistortion',
                    space=SPACE,
                    clean_prob=0.0,
                    draw_every=2,
                ),
            ),
        ),
        test_dataloader=dict(
            batch_size=1,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=procedural(
                2, dict(type='RequestedDistortion', space=SPACE)
            ),
        ),
        test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
        test_cfg=dict(type='TestLoop'),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.0)),
        train_cfg=dict(by_epoch=False, max_iters=1),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=0)),
        default_scope='mmseg',
        **kwargs,
    )


def test_runner_test_evaluates_the_gears_file(tmp_path, base_and_gears):
    """Runner.test never calls init_weights: the gears file used to be
    ignored and the evaluation measured the base."""
    base, gears, expected = base_and_gears
    runner = make_runner(tmp_path, dict(gears_file=gears), load_from=base)
    runner.test()
    assert_gears(runner.model, expected)
    assert not runner.model.gears_file_pending


def test_training_loads_the_gears_file_after_load_from(
    tmp_path, base_and_gears
):
    """init_weights runs before load_from: the gears file used to be read
    onto the random base and refused by the base hash."""
    base, gears, expected = base_and_gears
    runner = make_runner(
        tmp_path,
        dict(gears_file=gears),
        load_from=base,
        custom_hooks=[GearsAtStart()],
    )
    runner.train()
    for gear, tensors in expected.items():
        for name, t in tensors.items():
            assert torch.equal(runner.gears_at_start[gear][name], t)


def test_a_checkpoint_of_the_gear_model_keeps_its_gears(
    tmp_path, base_and_gears
):
    """A checkpoint holding gears (e.g. a resume) is the model's state:
    the gears file does not overwrite its gears."""
    base, gears, expected = base_and_gears
    init_default_scope('mmseg')
    model = MODELS.build(
        ConfigDict(type='GearNNSegmentor', segmentor=SEGMENTOR, space=SPACE)
    )
    load_checkpoint(model, base, map_location='cpu')
    full = str(tmp_path / 'full.pth')
    torch.save(dict(state_dict=model.state_dict()), full)
    runner = make_runner(tmp_path, dict(gears_file=gears), load_from=full)
    runner.test()
    for gear in expected:
        for name, t in runner.model.gear_bank.tensors(gear).items():
            assert torch.equal(t, model.gear_bank.tensors(gear)[name])


def _demo_runner(tmp_path, **options):
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = str(tmp_path)
    cfg.train_cfg.max_iters = 1
    cfg.train_cfg.val_interval = 1000
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.default_hooks.checkpoint.interval = 1000
    cfg.param_scheduler = []
    cfg.custom_hooks = [
        h for h in cfg.custom_hooks if h.type != 'GearBNRecalibrationHook'
    ]
    cfg.model.update(options)
    return Runner.from_cfg(cfg)


@pytest.mark.faults
@pytest.mark.parametrize(
    'adaptor', ['bn', 'all', ['decode_head.conv_seg.weight']]
)
def test_gears_on_no_base_stop_the_shipped_config(tmp_path, adaptor):
    """The demo gear config without load_from used to train its gears on
    random weights and exit 0, whatever the adaptor."""
    runner = _demo_runner(tmp_path, adaptor=adaptor)
    with pytest.raises(
        RuntimeError, match='no checkpoint has filled the base'
    ):
        runner.train()


def test_allow_random_base_opts_in(tmp_path):
    runner = _demo_runner(tmp_path, allow_random_base=True)
    runner.train()
    assert runner.iter == 1
