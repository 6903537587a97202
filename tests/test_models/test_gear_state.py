"""Gear state that cannot go silently wrong: an optimiser step moves only
the gears in the batch, gears belong to one base, loading while a gear is
switched in is loading, and threads serving different gears do not mix
them. (The same on two ranks: tests/test_tools/test_gear_state_dist.py.)"""

import copy
import logging
import sys
import threading

import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import load_checkpoint
from mmseg.registry import MODELS
from test_gearnn_segmentor import (
    SPACE,
    build,
    make_batch,
    segmentor_cfg,
    train_steps,
)

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.models.gear_file import base_sha256

GEARS = (1, 2, 3)  # the distorted gears of SPACE
# Four classes, as the heads of the test segmentors.
CLASSES = dict(classes=('sky', 'building', 'road', 'sidewalk'))


def distorting_pipeline(clean_prob):
    """One random gear per two images; a pair is clean with
    ``clean_prob``."""
    meta_keys = ('img_shape', 'ori_shape', 'pad_shape', 'distortion')
    return [
        dict(
            type='RandomDistortion',
            space=SPACE,
            clean_prob=clean_prob,
            draw_every=2,
        ),
        dict(type='PackSegInputs', meta_keys=meta_keys),
    ]


def make_optimizer(kind, params):
    if kind == 'adamw':
        optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    else:
        optimizer = torch.optim.SGD(
            params, lr=0.1, momentum=0.9, weight_decay=0.1
        )
    return OptimWrapper(optimizer)


def gear_snapshot(model, optim_wrapper):
    """Per gear: its tensors and the optimiser state of its parameters."""
    state = optim_wrapper.optimizer.state
    snapshot = {}
    for gear in GEARS:
        tensors = model.gear_bank.tensors(gear)
        snapshot[gear] = dict(
            tensors={n: t.detach().clone() for n, t in tensors.items()},
            optim={
                n: {k: copy.deepcopy(v) for k, v in state[t].items()}
                for n, t in tensors.items()
                if t in state
            },
        )
    return snapshot


def assert_gear_equal(a, b, gear, what):
    assert a['optim'].keys() == b['optim'].keys(), (gear, what)
    for n, t in a['tensors'].items():
        assert torch.equal(t, b['tensors'][n]), f'{what}: gear {gear} {n}'
    for n, s in a['optim'].items():
        for k, v in s.items():
            assert torch.equal(
                torch.as_tensor(v), torch.as_tensor(b['optim'][n][k])
            ), f'{what}: optimiser {k} of gear {gear} {n}'


# -- 1. a gear not in the batch does not move --------------------------------
@pytest.mark.faults
@pytest.mark.parametrize('kind', ['adamw', 'sgd'])
def test_absent_gears_and_their_optimiser_state_do_not_move(kind):
    model = build()
    optim = make_optimizer(kind, model.parameters())
    model.train()
    # Every gear steps once: each has moments (and a step count) to move by.
    model.train_step(make_batch([1, 2, 3, 1, 2, 3]), optim)
    for gears, present in (([0, 0], set()), ([1, 3, 1, 3], {1, 3})):
        before = gear_snapshot(model, optim)
        log = model.train_step(make_batch(gears, seed=1), optim)
        after = gear_snapshot(model, optim)
        for gear in GEARS:
            if gear in present:
                assert any(
                    not torch.equal(t, before[gear]['tensors'][n])
                    for n, t in after[gear]['tensors'].items()
                ), f'gear {gear} of the batch did not learn'
            else:
                assert_gear_equal(
                    after[gear], before[gear], gear, f'batch {gears}'
                )
        if not present:
            # The clean batch still gives a loss the runner logs.
            assert log['loss'] == 0
            assert log['loss_no_distorted_samples'] == 0
    model.check_base_frozen()


@pytest.mark.faults
def test_a_run_with_clean_batches_equals_the_run_without_them():
    """``RandomDistortion(clean_prob > 0)`` gives some batches of clean
    images only: a run on the stream ends with the gears of the same run
    on the stream with those batches dropped (AdamW, weight decay,
    constant learning rate)."""
    from mmseg_gearnn.datasets import ProceduralStreetDataset

    np.random.seed(3)
    pipeline = Compose(distorting_pipeline(0.5))
    data = ProceduralStreetDataset(
        num_samples=16, img_size=(32, 32), seed=0, metainfo=CLASSES
    )
    items = [pipeline(copy.deepcopy(data[i])) for i in range(16)]
    stream = [
        dict(
            inputs=[a['inputs'] for a in pair],
            data_samples=[a['data_samples'] for a in pair],
        )
        for pair in zip(items[::2], items[1::2])
    ]
    clean = [
        all(s.distortion['gear'] == 0 for s in b['data_samples'])
        for b in stream
    ]
    assert 0 < sum(clean) < len(stream), clean

    def run(batches):
        model = build()
        optim = make_optimizer('adamw', model.parameters())
        model.train()
        for batch in batches:
            model.train_step(copy.deepcopy(batch), optim)
        return model.gear_bank.state_dict()

    full = run(stream)
    dropped = run([b for b, c in zip(stream, clean) if not c])
    for k, v in full.items():
        assert torch.equal(v, dropped[k]), k


# -- 2. gears belong to one base ---------------------------------------------
class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged():
    handler = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


@pytest.mark.faults
def test_gears_are_refused_on_other_base_weights(tmp_path, warnings_logged):
    model = build()
    train_steps(model, make_batch([1, 2, 3], seed=1), steps=1)
    gears_file = str(tmp_path / 'gears.pth')
    model.base_checkpoint = 'base_a.pth'
    model.save_gears(gears_file)
    same = build()
    same.load_state_dict(model.segmentor.state_dict())
    same.load_gears(gears_file)
    for k, v in model.gear_bank.state_dict().items():
        assert torch.equal(same.gear_bank.state_dict()[k], v), k

    # The same architecture, one base weight shifted by 0.5.
    state = model.segmentor.state_dict()
    state['backbone.stem.0.weight'] = state['backbone.stem.0.weight'] + 0.5
    other = build()
    other.load_state_dict(state)
    other.base_checkpoint = 'base_b.pth'
    with pytest.raises(ValueError) as err:
        other.load_gears(gears_file)
    message = str(err.value)
    ours, theirs = base_sha256(other.segmentor), base_sha256(model.segmentor)
    assert ours != theirs
    for part in (gears_file, ours, theirs, 'base_a.pth', 'base_b.pth'):
        assert part in message, part
    assert 'allow_other_base=True' in message
    # Nothing was loaded.
    for gear in GEARS:
        for n, t in other.gear_bank.tensors(gear).items():
            assert torch.equal(t, state[n]), n

    # Allowed explicitly: by argument, or in the config.
    other.load_gears(gears_file, allow_other_base=True)
    allowed = build(allow_other_base=True)
    allowed.load_state_dict(state)
    allowed.load_gears(gears_file)
    for m in (other, allowed):
        for k, v in model.gear_bank.state_dict().items():
            assert torch.equal(m.gear_bank.state_dict()[k], v), k
    assert any(theirs in m for m in warnings_logged)

    # A file from before the hash was recorded: loaded, with a warning.
    payload = torch.load(gears_file, weights_only=True)
    del payload['base_sha256']
    old_file = str(tmp_path / 'old_gears.pth')
    torch.save(payload, old_file)
    warnings_logged.clear()
    build().load_gears(old_file)
    assert any('records no base_sha256' in m for m in warnings_logged)


def test_init_gearnn_model_names_the_base_file_in_errors(tmp_path):
    from mmengine.config import Config

    from mmseg_gearnn.apis import init_gearnn_model

    model = build()
    train_steps(model, make_batch([1, 2, 3], seed=1), steps=1)
    gears_file = str(tmp_path / 'gears.pth')
    model.save_gears(gears_file)
    state = model.segmentor.state_dict()
    state['backbone.stem.0.weight'] = state['backbone.stem.0.weight'] + 0.5
    other = str(tmp_path / 'other_base.pth')
    torch.save(dict(state_dict=state), other)
    cfg = Config(
        dict(
            model=dict(
                type='GearNNSegmentor',
                segmentor=segmentor_cfg('deeplabv3_r18'),
                space=SPACE,
                adaptor='bn',
            )
        )
    )
    with pytest.raises(ValueError) as err:
        init_gearnn_model(cfg, other, gears_file)
    assert 'was trained on other base weights' in str(err.value)
    assert f'(file: {other})' in str(err.value)


def test_base_hash_is_of_the_base_weights_and_the_selection_records_it(
    tmp_path,
):
    from mmseg_gearnn.selection import load_selection, reselect, run_selection

    model = build()
    bare = model.segmentor
    digest = base_sha256(bare)
    train_steps(model, make_batch([1, 2], seed=1), steps=1)
    model.eval()
    model.test_step(make_batch([2]))
    assert model.gear_bank.active == 2
    # Of the base's own weights, a gear switched in or not.
    assert model.gear_bank.base_sha256() == digest
    with torch.no_grad():
        bare.decode_head.conv_seg.bias.add_(1e-6)
    assert base_sha256(bare) != digest

    out = str(tmp_path / 'selection.json')
    run_selection(bare, SPACE, 'random', budget=0.05, progress=False, out=out)
    assert load_selection(out)['base_sha256'] == base_sha256(bare)
    again = reselect(out, budget=0.1)
    assert again['base_sha256'] == base_sha256(bare)


# -- 3. loading while a gear is switched in ----------------------------------
@pytest.fixture(scope='module')
def trained_checkpoint(tmp_path_factory):
    """A full Runner checkpoint of trained gears (meta, optimiser and all),
    and the runner config that wrote it."""
    work_dir = tmp_path_factory.mktemp('gear_load')
    model = build()
    cfg = dict(
        work_dir=str(work_dir),
        train_dataloader=dict(
            batch_size=4,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            dataset=dict(
                type='ProceduralStreetDataset',
                num_samples=8,
                img_size=(32, 32),
                metainfo=CLASSES,
                pipeline=distorting_pipeline(0.0),
            ),
        ),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
            logger=dict(type='LoggerHook', interval=1),
        ),
        default_scope='mmseg',
        randomness=dict(seed=0),
    )
    runner = Runner(model=model, experiment_name='gear_load_train', **cfg)
    runner.train()
    checkpoint = work_dir / 'iter_2.pth'
    assert checkpoint.is_file()
    cfg.pop('work_dir')
    return checkpoint, cfg


def _loaded_elsewhere(checkpoint):
    """A model of another initialisation, loaded with no gear live."""
    model = _other_init()
    load_checkpoint(model, str(checkpoint), map_location='cpu')
    return model


def _other_init():
    init_default_scope('mmseg')
    torch.manual_seed(1)  # base and gears unlike the checkpoint's
    model = MODELS.build(
        dict(
            type='GearNNSegmentor',
            segmentor=segmentor_cfg('deeplabv3_r18'),
            space=SPACE,
        )
    )
    model.init_weights()
    with torch.no_grad():
        # BN tensors start as constants: shift them, in the base and in
        # every gear, so that no stale copy can pass for the loaded one.
        for gear in (0, *GEARS):
            tensors = model.gear_bank.tensors(gear)
            for t in (tensors or model.gear_bank.live_tensors()).values():
                if t.is_floating_point():
                    t.add_(0.1 * (gear + 1))
    return model


def _switch_in_a_gear(model):
    model.eval()
    model.test_step(make_batch([2]))
    assert model.gear_bank.active == 2


LOAD_PATHS = [
    'load_state_dict',
    'assign',
    'mmengine_load_checkpoint',
    'runner_load_from',
    'runner_resume',
]


@pytest.mark.faults
@pytest.mark.parametrize('path', LOAD_PATHS)
def test_loading_while_a_gear_is_live_is_loading(
    path, trained_checkpoint, tmp_path
):
    checkpoint, cfg = trained_checkpoint
    model = _other_init()
    if path.startswith('runner'):
        runner = Runner(
            model=model,
            work_dir=str(tmp_path),
            load_from=str(checkpoint),
            resume=path == 'runner_resume',
            experiment_name=f'gear_load_{path}',
            **cfg,
        )
        model = runner.model
        _switch_in_a_gear(model)
        runner.load_or_resume()
        if path == 'runner_resume':
            assert runner.iter == 2
    else:
        _switch_in_a_gear(model)
        if path == 'mmengine_load_checkpoint':
            load_checkpoint(model, str(checkpoint), map_location='cpu')
        else:
            state = torch.load(checkpoint, weights_only=False)['state_dict']
            model.load_state_dict(state, assign=path == 'assign')
    expected = _loaded_elsewhere(checkpoint)

    def state_of(m):
        return {k: v.clone() for k, v in m.state_dict().items()}

    ours, theirs = state_of(model), state_of(expected)
    assert ours.keys() == theirs.keys()
    for k, v in theirs.items():
        assert torch.equal(ours[k], v), k
    batch = make_batch([0, 1, 2, 3, 2, 0], seed=4)
    model.eval()
    expected.eval()
    for a, b in zip(model.test_step(batch), expected.test_step(batch)):
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)
    # A later switch writes into the model's tensors, not orphaned ones.
    for gear in (1, 3, 0):
        model.switch_gear(gear)
        live = model.gear_bank.live_tensors()
        source = model.gear_bank.tensors(gear) or {
            n: theirs[f'segmentor.{n}'] for n in live
        }
        for n, t in live.items():
            assert torch.equal(t, source[n]), (gear, n)


def test_saving_while_a_gear_is_live_saves_the_base(tmp_path):
    """mmengine's checkpoint writer reads the state without the model's
    own ``state_dict`` (a checkpoint saved after validation, e.g. the best
    one, is written with the last gear switched in)."""
    from mmengine.runner.checkpoint import get_state_dict

    model = build()
    train_steps(model, make_batch([1, 2, 3], seed=1), steps=1)
    base = {k: v.clone() for k, v in model.segmentor.state_dict().items()}
    _switch_in_a_gear(model)
    state = get_state_dict(model)
    for k, v in base.items():
        assert torch.equal(state[f'segmentor.{k}'], v), k


# -- 4. threads serving different gears --------------------------------------
@pytest.mark.faults
def test_threads_serving_different_gears_get_their_gears_outputs():
    model = build()
    with torch.no_grad():  # gears far apart: any mix-up shows
        for gear in GEARS:
            for t in model.gear_bank.tensors(gear).values():
                if t.is_floating_point():
                    t.mul_(1 + gear)
    model.eval()
    batches = {g: make_batch([g], seed=g) for g in (0, 1, 2, 3)}
    expected = {
        g: model.test_step(copy.deepcopy(b))[0].seg_logits.data
        for g, b in batches.items()
    }
    wrong, errors = [], []

    def serve(gear):
        try:
            for _ in range(25):
                out = model.test_step(copy.deepcopy(batches[gear]))
                if not torch.equal(out[0].seg_logits.data, expected[gear]):
                    wrong.append(gear)
        except Exception as err:  # reported below, not lost in a thread
            errors.append(err)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads change as often as they can
    try:
        threads = [threading.Thread(target=serve, args=(g,)) for g in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert not wrong, f'{len(wrong)} outputs computed with another gear'
    # And the model is whole afterwards.
    for g, b in batches.items():
        out = model.test_step(copy.deepcopy(b))[0].seg_logits.data
        assert torch.equal(out, expected[g])


def test_a_copy_gets_its_own_lock_and_switches_its_own_tensors():
    model = build()
    train_steps(model, make_batch([1, 2], seed=1), steps=1)
    twin = copy.deepcopy(model)
    assert twin.gear_bank.lock is not model.gear_bank.lock
    twin.eval()
    twin.switch_gear(1)
    assert model.gear_bank.active == 0
    for n, t in twin.gear_bank.live_tensors().items():
        assert torch.equal(t, twin.gear_bank.tensors(1)[n])
    # The copy's load hooks restore the copy, not the original.
    twin.load_state_dict(model.state_dict())
    assert twin.gear_bank.active == 0
