"""The plugin's hooks inside a real mmengine Runner doing gear training."""

import copy
import os

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from toys import tiny_segmentor

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.engine import (
    ChannelsLastHook,
    FrozenBaseGuardHook,
    GearCheckpointHook,
)
from mmseg_gearnn.engine.hooks.gear_bn_recalibration_hook import (
    merge_bn_stats_over_ranks,
    recalibrate_bn,
)

SPACE = dict(distortions=dict(jpeg=[30, 10], brightness=[0.3]))
SEGMENTOR = tiny_segmentor((32, 32), num_classes=8)


def make_runner(
    work_dir,
    custom_hooks,
    max_iters=2,
    checkpoint_interval=2,
    adaptor='bn',
    **kwargs,
):
    model = dict(
        type='GearNNSegmentor',
        segmentor=copy.deepcopy(SEGMENTOR),
        space=SPACE,
        adaptor=adaptor,
    )
    return Runner(
        model=model,
        work_dir=str(work_dir),
        train_dataloader=dict(
            batch_size=2,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dict(
                type='ProceduralStreetDataset',
                num_samples=4,
                img_size=(32, 32),
                seed=0,
                pipeline=[
                    dict(
                        type='RandomDistortion',
                        space=SPACE,
                        clean_prob=0.0,
                        draw_every=2,
                    ),
                    dict(
                        type='PackSegInputs',
                        meta_keys=(
                            'img_shape',
                            'ori_shape',
                            'pad_shape',
                            'distortion',
                        ),
                    ),
                ],
            ),
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook',
                by_epoch=False,
                interval=checkpoint_interval,
            ),
            logger=dict(type='LoggerHook', interval=1),
        ),
        custom_hooks=custom_hooks,
        default_scope='mmseg',
        **kwargs,
    )


class SnapshotBase(Hook):
    """Keeps a copy of the base as training starts (after weight init)."""

    priority = 'LOWEST'

    def before_train(self, runner):
        model = runner.model
        self.base = {
            k: v.clone() for k, v in model.segmentor.state_dict().items()
        }
        self.gears = {
            k: v.clone() for k, v in model.gear_bank.state_dict().items()
        }


class TamperWithBase(Hook):
    """Changes one base tensor: what a wrong optimiser setup would do."""

    priority = 'HIGH'

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ):
        with torch.no_grad():
            runner.model.segmentor.decode_head.conv_seg.bias.add_(1.0)


def test_gears_file_written_at_checkpoint_and_end(tmp_path):
    snapshot = SnapshotBase()
    runner = make_runner(
        tmp_path,
        [
            dict(type='FrozenBaseGuardHook', interval=1),
            dict(type='GearCheckpointHook'),
            snapshot,
        ],
    )
    runner.train()
    # Every gear started from the base.
    for gear in range(1, 4):
        for name in runner.model.gear_bank.names:
            key = f'gears.{gear}.{name.replace(".", "::")}'
            assert torch.equal(snapshot.gears[key], snapshot.base[name])
    base = snapshot.base
    for name in ('gears_iter_2.pth', 'gears.pth', 'iter_2.pth'):
        assert (tmp_path / name).is_file(), name
    for k, v in runner.model.segmentor.state_dict().items():
        assert torch.equal(v, base[k]), k
    # The gears file restores the trained gears on a fresh wrapper.
    fresh = make_runner(tmp_path / 'fresh', []).model
    fresh.segmentor.load_state_dict(runner.model.segmentor.state_dict())
    fresh.load_gears(str(tmp_path / 'gears.pth'))
    for gear in range(1, 4):
        trained = runner.model.gear_bank.tensors(gear)
        for name, tensor in fresh.gear_bank.tensors(gear).items():
            assert torch.equal(tensor, trained[name]), (gear, name)
    gears_bytes = os.path.getsize(tmp_path / 'gears.pth')
    assert gears_bytes < os.path.getsize(tmp_path / 'iter_2.pth') / 2


def test_training_warns_when_the_selection_was_scored_on_another_base(
    tmp_path,
):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from mmseg_gearnn.selection import run_selection

    init_default_scope('mmseg')
    base = MODELS.build(copy.deepcopy(SEGMENTOR))
    base.init_weights()
    scored = str(tmp_path / 'scored.pth')
    torch.save(dict(state_dict=base.state_dict()), scored)
    selection = str(tmp_path / 'selection.json')
    run_selection(
        base,
        SPACE,
        'random',
        budget=0.05,
        checkpoint=scored,
        progress=False,
        out=selection,
    )
    with torch.no_grad():
        base.decode_head.conv_seg.bias.add_(0.5)
    other = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=base.state_dict()), other)
    logs = {}
    for name, load_from in (('same', scored), ('other', other)):
        runner = make_runner(
            tmp_path / name,
            [dict(type='GearCheckpointHook')],
            max_iters=1,
            adaptor=selection,
            load_from=load_from,
            # As the tools build it: GearCheckpointHook reads load_from.
            cfg=dict(load_from=load_from),
        )
        runner.train()
        with open(runner.logger.log_file) as f:
            logs[name] = f.read()
        hashes = (
            runner.model.selection_meta['base_sha256'],
            runner.model.gear_bank.base_sha256(),
        )
    assert 'scored on other base weights' not in logs['same']
    assert 'scored on other base weights' in logs['other']
    assert hashes[0] != hashes[1]
    for part in (selection, *hashes, f'(file: {scored})', f'(file: {other})'):
        assert part in logs['other'], part


def test_frozen_base_guard_stops_a_run_that_changes_the_base(tmp_path):
    runner = make_runner(
        tmp_path, [FrozenBaseGuardHook(interval=1), TamperWithBase()]
    )
    with pytest.raises(RuntimeError) as err:
        runner.train()
    assert 'decode_head.conv_seg.bias' in str(err.value)
    assert 'changed during gear training' in str(err.value)


def test_frozen_base_guard_checks_requires_grad(tmp_path):
    runner = make_runner(tmp_path, [FrozenBaseGuardHook(interval=1)])
    runner.model.segmentor.backbone.stem[0].weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match='must stay frozen'):
        runner.train()


def test_hook_arguments():
    with pytest.raises(ValueError, match='interval must be >= 1'):
        FrozenBaseGuardHook(interval=0)
    assert GearCheckpointHook().filename_tmpl == 'gears_iter_{}.pth'


class PoisonGear(Hook):
    """Puts a NaN into gear 2 at the second iteration."""

    priority = 'HIGHEST'

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ):
        if runner.iter == 1:
            tensors = runner.model.gear_bank.tensors(2)
            name = sorted(tensors)[0]
            with torch.no_grad():
                tensors[name].view(-1)[0] = float('nan')
            self.name = name


@pytest.mark.faults
def test_finite_gears_hook_stops_and_keeps_last_good_checkpoint(tmp_path):
    poison = PoisonGear()
    runner = make_runner(
        tmp_path,
        [dict(type='FiniteGearsHook'), poison],
        max_iters=3,
        checkpoint_interval=1,
    )
    with pytest.raises(RuntimeError) as err:
        runner.train()
    message = str(err.value)
    assert 'gear 2 (jpeg 10)' in message
    assert poison.name in message
    assert 'NaN or Inf after iteration 2' in message
    assert (tmp_path / 'iter_1.pth').is_file()
    assert not (tmp_path / 'iter_2.pth').exists()


def _first_bn_stats(model, gear):
    tensors = model.gear_bank.tensors(gear)
    name = 'backbone.stem.1'
    return {k: tensors[f'{name}.{k}'].clone() for k in BN_BUFFERS}


BN_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')


def test_bn_recalibration_makes_inference_match_training(tmp_path):
    """After re-estimation on a batch, a gear's inference on that batch
    (running statistics) equals its training-mode forward (batch
    statistics); before, it does not."""
    runner = make_runner(tmp_path, [])
    model = runner.model
    batch = next(iter(runner.train_dataloader))
    data = model.data_preprocessor(batch, True)
    inputs, samples = data['inputs'], data['data_samples']
    gear = samples[0].metainfo['distortion']['gear']
    assert all(s.metainfo['distortion']['gear'] == gear for s in samples)
    model.train()
    model.segmentor.decode_head.dropout.eval()  # a deterministic reference
    first_bn_inputs = []
    handle = model.segmentor.backbone.stem[1].register_forward_hook(
        lambda module, args, output: first_bn_inputs.append(args[0].detach())
    )
    with torch.no_grad():
        # Move the gear's statistics away from the batch's, as a gear
        # trained on other batches would be.
        for name, t in model.gear_bank.tensors(gear).items():
            if name.endswith('running_mean'):
                t.add_(0.5)
        training = model.call_route(gear, '_forward', inputs, samples)
    handle.remove()
    (first_bn_input,) = first_bn_inputs
    model.eval()
    with torch.no_grad():
        before = model._forward(inputs, samples)
    model.restore_base()
    base_before = copy.deepcopy(model.segmentor.state_dict())
    others = {g: _first_bn_stats(model, g) for g in range(1, 4) if g != gear}

    seen = recalibrate_bn(model, [batch], batches_per_gear=1)

    assert seen == {gear: 1}
    assert not model.training
    with torch.no_grad():
        after = model._forward(inputs, samples)
    # The gear's statistics are now exactly those of the batch.
    stats = _first_bn_stats(model, gear)
    torch.testing.assert_close(
        stats['running_mean'], first_bn_input.mean((0, 2, 3))
    )
    torch.testing.assert_close(
        stats['running_var'], first_bn_input.var((0, 2, 3), unbiased=True)
    )
    assert stats['num_batches_tracked'] == 1
    # So inference follows training; not exactly, as running_var is the
    # unbiased variance of a small batch.
    error_before = (before - training).abs().max()
    error_after = (after - training).abs().max()
    assert error_after < 0.3 * error_before, (error_after, error_before)
    for g, stats in others.items():  # gears without batches keep theirs
        for k, v in _first_bn_stats(model, g).items():
            assert torch.equal(v, stats[k]), (g, k)
    model.restore_base()
    for k, v in model.segmentor.state_dict().items():
        assert torch.equal(v, base_before[k]), k
    # The BN momentum is put back.
    assert model.segmentor.backbone.stem[1].momentum == 0.1


def test_bn_recalibration_merge_over_ranks_weights_by_batches(
    tmp_path, monkeypatch
):
    """Two ranks, with two batches and one batch of a gear, merge to what
    one process gets from the three; gears no rank re-estimated keep
    theirs."""
    model = make_runner(tmp_path, []).model
    # Three batches of one gear, of different images.
    batches, gear = {}, None
    for batch in make_runner(tmp_path / 'data', []).train_dataloader:
        g = batch['data_samples'][0].metainfo['distortion']['gear']
        seen = batches.setdefault(g, [])
        if not any(
            torch.equal(b['inputs'][0], batch['inputs'][0]) for b in seen
        ):
            seen.append(batch)
        if len(seen) == 3:
            gear = g
            break
    first, second, third = batches[gear]
    single, rank_a, rank_b = (copy.deepcopy(model) for _ in range(3))
    assert recalibrate_bn(single, [first, second, third], 3) == {gear: 3}
    assert recalibrate_bn(rank_a, [first, second], 2) == {gear: 2}
    assert recalibrate_bn(rank_b, [third], 1) == {gear: 1}
    others = {g: _first_bn_stats(rank_a, g) for g in range(1, 4) if g != gear}
    expected = _first_bn_stats(single, gear)
    assert not torch.allclose(
        _first_bn_stats(rank_a, gear)['running_mean'], expected['running_mean']
    )

    # Two ranks played in turn: rank b's all-reduce records what it sends,
    # rank a's adds it to its own.
    sent = []
    monkeypatch.setattr(
        torch.distributed,
        'all_reduce',
        lambda t, op, group: sent.append(t.clone()),
    )
    merge_bn_stats_over_ranks(rank_b.gear_bank, {gear: 1})
    monkeypatch.setattr(
        torch.distributed, 'all_reduce', lambda t, op, group: t.add_(sent[0])
    )
    assert merge_bn_stats_over_ranks(rank_a.gear_bank, {gear: 2}) == {gear: 3}

    merged = _first_bn_stats(rank_a, gear)
    for k in ('running_mean', 'running_var'):
        torch.testing.assert_close(merged[k], expected[k])
    assert merged['num_batches_tracked'] == 3
    for g, stats in others.items():
        for k, v in _first_bn_stats(rank_a, g).items():
            assert torch.equal(v, stats[k]), (g, k)


def test_bn_recalibration_hook_runs_before_the_last_checkpoint(tmp_path):
    runner = make_runner(
        tmp_path,
        [
            dict(type='GearBNRecalibrationHook', batches_per_gear=2),
            dict(type='GearCheckpointHook'),
        ],
        max_iters=2,
    )
    runner.train()
    model = runner.model
    saved = torch.load(tmp_path / 'gears.pth', weights_only=False)
    fresh = make_runner(tmp_path / 'fresh', []).model
    fresh.segmentor.load_state_dict(model.segmentor.state_dict())
    fresh.load_gears(str(tmp_path / 'gears.pth'))
    for gear in range(1, 4):
        # Reset, then averaged over exactly two batches of the gear.
        assert _first_bn_stats(model, gear)['num_batches_tracked'] == 2
        for k, v in _first_bn_stats(fresh, gear).items():
            assert torch.equal(v, _first_bn_stats(model, gear)[k])
    assert saved  # a real file was written


def test_bn_recalibration_arguments():
    from mmseg_gearnn.engine import GearBNRecalibrationHook

    with pytest.raises(ValueError, match='batches_per_gear must be >= 1'):
        GearBNRecalibrationHook(batches_per_gear=0)
    with pytest.raises(ValueError, match='max_batches must be >= 1'):
        GearBNRecalibrationHook(max_batches=0)


def _trained_gears(work_dir, custom_hooks):
    runner = make_runner(
        work_dir, custom_hooks, max_iters=3, randomness=dict(seed=0)
    )
    runner.train()
    return runner


def test_channels_last_hook_keeps_training_results(tmp_path):
    plain = _trained_gears(tmp_path / 'plain', [])
    fast = _trained_gears(tmp_path / 'fast', [ChannelsLastHook()])
    weights = [
        t
        for t in fast.model.parameters()
        if t.dim() == 4 and t.shape[1] > 1 and t.shape[2:].numel() > 1
    ]
    assert weights
    for t in weights:
        assert t.is_contiguous(memory_format=torch.channels_last)
        assert not t.is_contiguous()
    # Gears trained from the same seed agree up to float rounding, and so
    # does the untouched base.
    for gear in range(1, 4):
        trained = plain.model.gear_bank.tensors(gear)
        for name, tensor in fast.model.gear_bank.tensors(gear).items():
            torch.testing.assert_close(
                tensor, trained[name], rtol=1e-4, atol=1e-5
            )
    for name, tensor in fast.model.segmentor.state_dict().items():
        assert torch.equal(tensor, plain.model.segmentor.state_dict()[name])


def test_channels_last_hook_converts_before_testing(tmp_path):
    runner = make_runner(tmp_path, [])
    ChannelsLastHook().before_test(runner)
    conv = runner.model.segmentor.backbone.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
