"""Optimiser of gear training: one rate for BN tensors, another for the
rest."""

import copy
import inspect

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor
from mmseg.registry import (
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
)

from ...models.adaptor_tensors import bn_names


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class GearOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Builds the optimiser of a ``GearNNSegmentor``'s gears, with the
    gears' tensors outside BN layers (convolution kernels, their biases)
    at ``non_bn_lr_mult`` times the rate.

    A gear's BN scales and shifts take a high rate, to learn much from the
    few batches of their level; a kernel at that rate is thrown off (on
    CamVid a stem kernel at the BN tensors' rate drove the training loss
    past 8). ``paramwise_cfg`` takes only ``non_bn_lr_mult``; every other
    trainable parameter keeps the optimiser's rate.

    Example:
        >>> optim_wrapper = dict(
        ...     constructor='GearOptimWrapperConstructor',
        ...     optimizer=dict(type='AdamW', lr=6e-2, weight_decay=0.0),
        ...     paramwise_cfg=dict(non_bn_lr_mult=1 / 30))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg=None):
        paramwise_cfg = dict(paramwise_cfg or {})
        mult = paramwise_cfg.pop('non_bn_lr_mult', 1.0)
        if paramwise_cfg:
            raise ValueError(
                'GearOptimWrapperConstructor takes only non_bn_lr_mult in '
                f'paramwise_cfg, not {sorted(paramwise_cfg)}'
            )
        if isinstance(mult, bool) or not isinstance(mult, (int, float)):
            raise TypeError(f'non_bn_lr_mult must be a number, got {mult!r}')
        if not mult > 0:
            raise ValueError(f'non_bn_lr_mult must be > 0, got {mult}')
        super().__init__(optim_wrapper_cfg, None)
        self.non_bn_lr_mult = float(mult)

    def __call__(self, model: nn.Module):
        if hasattr(model, 'module'):
            model = model.module
        if not hasattr(model, 'gear_bank'):
            raise TypeError(
                'GearOptimWrapperConstructor builds the optimiser of a '
                f'GearNNSegmentor, not of a {type(model).__name__}'
            )
        bank = model.gear_bank
        bn = set(bn_names(model.segmentor))
        non_bn_ids = {
            id(bank.tensors(gear)[name])
            for gear in range(1, bank.num_gears)
            for name in bank.param_names
            if name not in bn
        }
        default, non_bn = [], []
        for param in model.parameters():
            (non_bn if id(param) in non_bn_ids else default).append(param)
        groups = [dict(params=default)]
        if non_bn:
            groups.append(
                dict(params=non_bn, lr=self.base_lr * self.non_bn_lr_mult)
            )
        optimizer_cfg = copy.deepcopy(self.optimizer_cfg)
        optimizer_cls = OPTIMIZERS.get(optimizer_cfg['type'])
        first_arg = next(iter(inspect.signature(optimizer_cls).parameters))
        optimizer_cfg[first_arg] = groups
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg = copy.deepcopy(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(
            wrapper_cfg, default_args=dict(optimizer=optimizer)
        )
