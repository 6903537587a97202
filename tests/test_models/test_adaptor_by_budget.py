"""A GearNNSegmentor whose adaptor is a budget: its budget checked when
built (its method and options by the selection, when a run's config is
completed and before selecting), no gears until selected, and the adaptor
of a checkpoint of the model when one is loaded."""

import gc
import weakref

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from toys import tiny_segmentor

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.engine import complete_gear_config
from mmseg_gearnn.selection import check_budget_request

SPACE = dict(distortions=dict(jpeg=[40, 10]))
NAMES = ['decode_head.conv_seg.weight', 'backbone.stem.1.running_mean']


def build(adaptor):
    init_default_scope('mmseg')
    return MODELS.build(
        dict(
            type='GearNNSegmentor',
            segmentor=tiny_segmentor(),
            space=SPACE,
            adaptor=adaptor,
        )
    )


@pytest.mark.parametrize(
    'adaptor, message',
    [
        (dict(budget=0), r'budget= a fraction .* in \(0, 1\]'),
        (dict(budget=-0.1), r'got budget=-0\.1'),
        (dict(budget=1.5), r'got budget=1\.5'),
        (dict(budget=True), r'got budget=True'),
        (dict(method='fisher'), r'got budget=None'),
        (dict(budget=0.01, method=3), 'the name of a scoring method'),
    ],
)
def test_bad_budget_adaptor_is_refused(adaptor, message):
    with pytest.raises(ValueError, match=message):
        build(adaptor)
    with pytest.raises(ValueError, match=message):
        check_budget_request(adaptor)


@pytest.mark.parametrize(
    'adaptor, message',
    [
        (dict(budget=0.01, method='magic'), 'unknown adaptor selection'),
        (dict(budget=0.01, stepz=3), r"unknown option\(s\) \['stepz'\]"),
        (dict(budget=0.01, lr=0.1), r"unknown option\(s\) \['lr'\]"),
    ],
)
def test_bad_selection_of_a_budget_is_refused_before_the_run(adaptor, message):
    """The method and its options are the selection's: checked by it, and
    by the completion of a run's config, before anything is built."""
    with pytest.raises(ValueError, match=message):
        check_budget_request(adaptor)
    init_default_scope('mmseg')
    cfg = Config(
        dict(
            model=dict(
                type='GearNNSegmentor',
                segmentor=tiny_segmentor(),
                space=SPACE,
                adaptor=adaptor,
            )
        )
    )
    with pytest.raises(ValueError, match=message):
        complete_gear_config(cfg)


def test_budget_adaptor_has_no_gears_until_selected():
    model = build(dict(budget=0.01, method='weight_change', lr=0.1))
    assert model.adaptor_request['method'] == 'weight_change'
    assert model.adaptor_pending and model.adaptor_names == []
    assert build(dict(budget=0.01)).adaptor_request['method'] == 'fisher'
    model.eval()
    with pytest.raises(RuntimeError, match='not been selected yet'):
        model.predict(torch.zeros(1, 3, 32, 32))
    model.set_adaptor(NAMES)
    assert not model.adaptor_pending
    assert set(NAMES) <= set(model.adaptor_names)
    with pytest.raises(RuntimeError, match='already hold an adaptor'):
        model.set_adaptor('bn')
    assert model.predict(torch.zeros(1, 3, 32, 32))[0].pred_sem_seg.shape


def test_checkpoint_of_the_model_gives_its_adaptor():
    trained = build(NAMES)
    with torch.no_grad():
        for tensor in trained.gear_bank.tensors(2).values():
            tensor.add_(1)
    model = build(dict(budget=0.01))
    assert not model.base_loaded
    model.load_state_dict(trained.state_dict())
    assert model.base_loaded and not model.adaptor_pending
    assert model.adaptor_names == trained.adaptor_names
    for name, tensor in trained.gear_bank.tensors(2).items():
        assert torch.equal(model.gear_bank.tensors(2)[name], tensor)
    # A bare base fills the base and leaves the adaptor to the selection.
    bare = build(dict(budget=0.01))
    bare.load_state_dict(trained.segmentor.state_dict(), strict=False)
    assert bare.base_loaded and bare.adaptor_pending


def test_a_new_adaptor_detaches_the_old_gear_bank():
    model = build(dict(budget=0.01))
    base = model.segmentor
    hooks = (
        len(base._load_state_dict_pre_hooks),
        len(base._load_state_dict_post_hooks),
    )
    old = weakref.ref(model.gear_bank)
    model.set_adaptor(NAMES)
    # Only the new bank's hooks on the base, and nothing keeps the old one.
    assert hooks == (
        len(base._load_state_dict_pre_hooks),
        len(base._load_state_dict_post_hooks),
    )
    gc.collect()
    assert old() is None
    # The new bank's hooks work: a load with a gear switched in loads.
    model.eval()
    model.switch_gear(1)
    state = {k: v + 1 for k, v in model.segmentor.state_dict().items()}
    model.segmentor.load_state_dict(state)
    model.switch_gear(0)
    for k, v in model.segmentor.state_dict().items():
        assert torch.equal(v, state[k]), k
