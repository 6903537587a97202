"""The tensors an adaptor may hold, and their sizes.

A candidate is every parameter tensor of the model plus the running
statistics (``running_mean``, ``running_var``) of every BatchNorm layer,
named like their ``state_dict`` keys. ``num_batches_tracked`` is never a
candidate: it is a step counter, not learned state.
"""

from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

PARAM = 'param'
BN_BUFFER = 'bn_buffer'
BN_STAT_NAMES = ('running_mean', 'running_var')


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


def bn_modules(model: nn.Module) -> Dict[str, _BatchNorm]:
    """Every BatchNorm layer (SyncBN included) by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm)
    }


def _join(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def list_candidates(model: nn.Module) -> List[TensorInfo]:
    """The candidate tensors of ``model``, in ``state_dict`` order.

    Args:
        model (nn.Module): any model, typically an mmseg segmentor.

    Returns:
        list[TensorInfo]: every parameter and every BatchNorm running
        statistic, in ``state_dict`` order (a parameter shared by two
        modules appears once, under its first name).
    """
    bn = bn_modules(model)
    bn_param_names = {
        _join(mod_name, p_name)
        for mod_name, module in bn.items()
        for p_name, _ in module.named_parameters(recurse=False)
    }
    bn_buffer_names = {
        _join(mod_name, b_name)
        for mod_name, module in bn.items()
        for b_name in BN_STAT_NAMES
        if getattr(module, b_name, None) is not None
    }
    found = {}
    for name, p in model.named_parameters():
        found[name] = TensorInfo(
            name=name,
            numel=p.numel(),
            bytes=p.numel() * p.element_size(),
            kind=PARAM,
            is_bn=name in bn_param_names,
        )
    for name, b in model.named_buffers():
        if name in bn_buffer_names:
            found[name] = TensorInfo(
                name=name,
                numel=b.numel(),
                bytes=b.numel() * b.element_size(),
                kind=BN_BUFFER,
                is_bn=True,
            )
    order = list(model.state_dict(keep_vars=True))
    rank = {name: i for i, name in enumerate(order)}
    return sorted(found.values(), key=lambda t: rank.get(t.name, len(rank)))


def training_only_modules(model: nn.Module) -> List[str]:
    """Submodules that only feed the training loss, never the prediction.

    An mmseg segmentor's ``auxiliary_head`` adds a loss during training and
    is skipped at inference, so a gear holding its tensors would spend
    budget on weights that cannot change any output.
    """
    if getattr(model, 'with_auxiliary_head', False):
        return ['auxiliary_head']
    return []


def in_modules(name: str, modules: Sequence[str]) -> bool:
    """Whether tensor ``name`` belongs to one of ``modules`` (by name)."""
    return any(name == m or name.startswith(m + '.') for m in modules)


def model_total_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and every buffer of ``model``."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return int(total)


def candidate_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The live tensors behind :func:`list_candidates`, by name."""
    tensors = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    out = {}
    for info in list_candidates(model):
        out[info.name] = (
            tensors[info.name] if info.kind == PARAM else buffers[info.name]
        )
    return out
