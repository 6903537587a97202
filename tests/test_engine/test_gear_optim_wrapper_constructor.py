"""Gear training's optimiser: BN tensors at the rate, the rest slower."""

import copy

import pytest
import torch
import torch.nn as nn
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from test_hooks import SEGMENTOR, SPACE

from mmseg_gearnn.models.adaptor_tensors import bn_names

OPTIM = dict(optimizer=dict(type='AdamW', lr=0.06, weight_decay=0.0))
KERNEL = 'backbone.stem.0.weight'


def build(adaptor):
    init_default_scope('mmseg')
    return MODELS.build(
        dict(
            type='GearNNSegmentor',
            segmentor=copy.deepcopy(SEGMENTOR),
            space=SPACE,
            adaptor=adaptor,
        )
    )


def constructor(**paramwise):
    return OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type='GearOptimWrapperConstructor',
            optim_wrapper_cfg=OPTIM,
            paramwise_cfg=paramwise,
        )
    )


def test_gear_kernels_take_their_own_rate():
    bn = [n for n in bn_names(build('bn').segmentor) if n.endswith('.weight')]
    conv = KERNEL
    model = build([conv, *bn[:2]])
    wrapper = constructor(non_bn_lr_mult=0.1)(model)
    groups = wrapper.optimizer.param_groups
    assert [g['lr'] for g in groups] == [0.06, pytest.approx(0.006)]
    bank = model.gear_bank
    gears = range(1, bank.num_gears)
    slow = {id(p) for p in groups[1]['params']}
    assert slow == {id(bank.tensors(g)[conv]) for g in gears}
    fast = {id(p) for p in groups[0]['params']}
    assert {id(bank.tensors(g)[n]) for g in gears for n in bn[:2]} <= fast
    # Every parameter once.
    assert len(slow | fast) == len(list(model.parameters()))
    assert not slow & fast


def test_bn_only_adaptor_keeps_one_group():
    wrapper = constructor(non_bn_lr_mult=0.1)(build('bn'))
    assert [g['lr'] for g in wrapper.optimizer.param_groups] == [0.06]


@pytest.mark.faults
def test_bad_settings_are_named():
    with pytest.raises(
        ValueError, match=r"only non_bn_lr_mult.*\['lr_mult'\]"
    ):
        constructor(lr_mult=2)
    with pytest.raises(ValueError, match='non_bn_lr_mult must be > 0'):
        constructor(non_bn_lr_mult=0)
    with pytest.raises(TypeError, match='must be a number'):
        constructor(non_bn_lr_mult='0.1')
    with pytest.raises(TypeError, match='not of a Conv2d'):
        constructor()(nn.Conv2d(1, 1, 1))


def test_through_an_mmseg_config():
    from mmengine.optim import build_optim_wrapper

    model = build([KERNEL])
    wrapper = build_optim_wrapper(
        model,
        dict(
            constructor='GearOptimWrapperConstructor',
            paramwise_cfg=dict(non_bn_lr_mult=0.5),
            **OPTIM,
        ),
    )
    assert [g['lr'] for g in wrapper.optimizer.param_groups] == [0.06, 0.03]
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)
