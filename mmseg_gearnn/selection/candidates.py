"""The tensors an adaptor may hold, and their sizes.

A candidate is every parameter tensor of the model plus the running
statistics of every BatchNorm layer, named like their ``state_dict`` keys,
except those of the modules that only feed the training loss (an
``auxiliary_head``: unused at inference). The set is defined once, by
:func:`~mmseg_gearnn.models.adaptor_tensors.adaptor_candidates`.
``num_batches_tracked`` is never a candidate: it is a step counter, not
learned state.
"""

from dataclasses import asdict, dataclass
from typing import Dict, List

import torch
import torch.nn as nn

from ..models.adaptor_tensors import (
    adaptor_candidates,
    bn_modules,
    in_modules,
    training_only_modules,
)

__all__ = [
    'BN_BUFFER',
    'PARAM',
    'TensorInfo',
    'bn_modules',
    'candidate_tensors',
    'in_modules',
    'list_candidates',
    'model_total_bytes',
    'training_only_modules',
]

PARAM = 'param'
BN_BUFFER = 'bn_buffer'


@dataclass(frozen=True)
class TensorInfo:
    """One candidate tensor.

    Attributes:
        name (str): its ``state_dict`` key, e.g.
            ``'backbone.layer1.0.bn1.running_mean'``.
        numel (int): number of elements.
        bytes (int): storage size in bytes (``numel * element_size``).
        kind (str): ``'param'`` or ``'bn_buffer'``.
        is_bn (bool): whether it belongs to a BatchNorm layer (its affine
            weight / bias or a running statistic).
    """

    name: str
    numel: int
    bytes: int
    kind: str
    is_bn: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _join(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def list_candidates(model: nn.Module) -> List[TensorInfo]:
    """The candidate tensors of ``model``, in ``state_dict`` order.

    Args:
        model (nn.Module): any model, typically an mmseg segmentor.

    Returns:
        list[TensorInfo]: every parameter and every BatchNorm running
        statistic but the training-only modules', in ``state_dict`` order
        (a parameter shared by two modules appears once, under its first
        name).
    """
    params = dict(model.named_parameters())
    bn_param_names = {
        _join(mod_name, p_name)
        for mod_name, module in bn_modules(model).items()
        for p_name, _ in module.named_parameters(recurse=False)
    }
    return [
        TensorInfo(
            name=name,
            numel=t.numel(),
            bytes=t.numel() * t.element_size(),
            kind=PARAM if name in params else BN_BUFFER,
            is_bn=name not in params or name in bn_param_names,
        )
        for name, t in candidate_tensors(model).items()
    ]


def model_total_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and every buffer of ``model``."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return int(total)


def candidate_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The live candidate tensors by name, in ``state_dict`` order."""
    rank = {n: i for i, n in enumerate(model.state_dict(keep_vars=True))}
    return dict(
        sorted(
            adaptor_candidates(model).items(),
            key=lambda item: rank.get(item[0], len(rank)),
        )
    )
