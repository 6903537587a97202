"""The scoring methods: per-tensor distortion sensitivity.

Each method is registered in :data:`~.scores.SCORERS` with its properties
(:func:`~.scores.register_scorer`); to add one, write its function here
and register it. Every method returns one finite, non-negative raw score
per candidate tensor (see :func:`~.candidates.list_candidates`);
:func:`~.scores.compute_scores` normalises them. The methods:

``weight_change`` (the paper's, inferred)
    For each distortion level, a copy of the model is fine-tuned for
    ``steps`` SGD steps on batches at that level, every parameter
    trainable and every BatchNorm layer in train mode (so its running
    statistics move too). Raw score of a tensor: its relative change
    ``||w_after - w_before|| / (||w_before|| + eps)``, averaged over the
    levels; BatchNorm running statistics are measured the same way. Plain
    SGD with momentum and no weight decay is used on purpose: Adam's
    per-element step normalisation would erase the gradient magnitude that
    the score measures, and decay would add ``lr * wd`` to every tensor.

``fisher``
    Empirical Fisher diagonal on distorted batches, in eval mode (the
    deployed model: running statistics used, not updated; no dropout):
    ``F_i = mean over batches of g_i^2`` with ``g`` the mini-batch
    gradient. Raw score of a parameter tensor: ``mean_i(F_i * w_i^2)``, the
    second-order loss change per element when the tensor is perturbed by
    a fixed *relative* amount; the mean over elements (not the sum) makes
    tensors of different sizes compare, and the ``w^2`` factor makes it
    invariant to rescaling a tensor (``w -> c w`` gives ``g -> g / c``).

``rgn``
    Relative gradient norm of Auto-RGN (surgical fine-tuning):
    ``||g|| / (||w|| + eps)`` per batch, averaged over the batches, same
    batches and mode as ``fisher``.

BatchNorm running statistics have no gradient. For ``fisher`` and
``rgn`` their raw score is the shift of the batch statistics of the
layer's input on distorted data from the running statistics, per batch
and averaged over batches:
``mean_c |mu_d - mu| / sqrt(var + eps)`` for ``running_mean`` and
``mean_c |var_d - var| / (var + eps)`` for ``running_var``.

``bn``, ``all``, ``random``
    Baselines and a control: 1 for every BatchNorm tensor (affine weight
    and bias, running mean and variance) and 0 otherwise; 1 for every
    tensor; uniform random in [0, 1) from ``seed``.
"""

import copy
from functools import partial
from typing import Dict, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils.console import ProgressBar
from .candidates import PARAM, bn_modules, candidate_tensors, list_candidates
from .data import BatchSource, Level
from .scores import check_steps_levels, register_scorer

EPS = 1e-12


def segmentor_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """The total training loss of an mmseg segmentor on one batch."""
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    return loss


def _checked_loss(model: nn.Module, batch: dict, where: str) -> torch.Tensor:
    loss = segmentor_loss(model, batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f'the loss is {loss.item()} on a batch {where}; lower the '
            'learning rate (--lr) or check the data and the checkpoint'
        )
    return loss


def _working_copy(model: nn.Module, train: bool) -> nn.Module:
    """A deep copy with every parameter trainable, in train mode with every
    BatchNorm layer training (``train=True``) or in eval mode."""
    work = copy.deepcopy(model)
    work.train(train)
    if train:
        # Backbones may put frozen stages or BN layers (norm_eval) back in
        # eval mode inside train(): undo it for BN.
        for module in bn_modules(work).values():
            module.train(True)
    for p in work.parameters():
        p.requires_grad_(True)
    return work


def _relative_change(after: torch.Tensor, before: torch.Tensor) -> float:
    diff = (after.double() - before.double()).norm().item()
    return diff / (before.double().norm().item() + EPS)


def _progress(total: int, desc: str, enabled: bool) -> ProgressBar:
    # Redrawn on a terminal, a line per quarter in a log.
    return ProgressBar(total, desc, enabled=enabled)


@register_scorer(
    'weight_change',
    needs_data=True,
    options=('lr', 'momentum'),
    description='mean over levels of ||w_after - w_before|| / '
    '(||w_before|| + eps) after `steps` SGD steps per level on a copy in '
    'train mode (BN running stats measured the same way)',
)
def weight_change_scores(
    model: nn.Module,
    source: BatchSource,
    levels: Sequence[Level],
    steps: int = 10,
    seed: int = 0,
    progress: bool = True,
    lr: float = 0.01,
    momentum: float = 0.9,
) -> Dict[str, float]:
    """Raw ``weight_change`` scores (see the module docstring).

    Args:
        model (nn.Module): the segmentor; it is not modified.
        source (BatchSource): distorted batches per level.
        levels (Sequence[tuple]): the (type, level) pairs to fine-tune on.
        steps (int): SGD steps per level.
        seed (int): seeds torch before each level's fine-tune.
        progress (bool): show a progress bar.
        lr (float): SGD learning rate.
        momentum (float): SGD momentum.

    Returns:
        dict[str, float]: raw score per candidate tensor.
    """
    check_steps_levels(steps, levels)
    work = _working_copy(model, train=True)
    start_state = copy.deepcopy(work.state_dict())
    before = {
        k: v.detach().clone() for k, v in candidate_tensors(work).items()
    }
    totals = dict.fromkeys(before, 0.0)
    bar = _progress(len(levels) * steps, 'weight_change', progress)
    for dtype, level in levels:
        work.load_state_dict(start_state)
        torch.manual_seed(seed)
        optimizer = torch.optim.SGD(
            work.parameters(), lr=lr, momentum=momentum
        )
        batches = source.level_batches(dtype, level)
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = _checked_loss(
                work, next(batches), f'at {dtype}={level}, step {step}'
            )
            loss.backward()
            optimizer.step()
            bar.update(1)
        after = candidate_tensors(work)
        for name, b in before.items():
            totals[name] += _relative_change(after[name].detach(), b)
    bar.close()
    return {name: total / len(levels) for name, total in totals.items()}


class _BNShift:
    """Forward pre-hooks measuring how far each BatchNorm layer's batch
    statistics are from its running statistics."""

    def __init__(self, model: nn.Module) -> None:
        self.sums: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}
        self.handles = []
        for name, module in bn_modules(model).items():
            if module.running_mean is None or module.running_var is None:
                continue
            self.handles.append(
                module.register_forward_pre_hook(self._hook(name))
            )

    def _add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value
        self.counts[key] = self.counts.get(key, 0) + 1

    def _hook(self, name: str):
        prefix = f'{name}.' if name else ''

        def hook(module: _BatchNorm, args) -> None:
            with torch.no_grad():
                x = args[0].detach().double()
                x = x.transpose(0, 1).reshape(x.shape[1], -1)
                mu_d = x.mean(dim=1)
                var_d = x.var(dim=1, unbiased=False)
                mu = module.running_mean.double()
                var = module.running_var.double()
                mean_shift = (mu_d - mu).abs() / (var + module.eps).sqrt()
                var_shift = (var_d - var).abs() / (var + module.eps)
            self._add(prefix + 'running_mean', mean_shift.mean().item())
            self._add(prefix + 'running_var', var_shift.mean().item())

        return hook

    def scores(self) -> Dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def gradient_statistics(
    model: nn.Module,
    batches: Iterator[dict],
    num_batches: int,
    progress: bool = True,
    desc: str = 'gradients',
) -> Dict[str, Dict[str, float]]:
    """Fisher, RGN and BN-shift raw scores from one pass over batches.

    The model is copied and run in eval mode with every parameter
    trainable; it is not modified.

    Args:
        model (nn.Module): the segmentor.
        batches (Iterator[dict]): distorted batches.
        num_batches (int): how many to read.
        progress (bool): show a progress bar.
        desc (str): progress bar label.

    Returns:
        dict: ``fisher`` and ``rgn`` (raw score per parameter), and
        ``bn_shift`` (raw score per BatchNorm running statistic).
    """
    work = _working_copy(model, train=False)
    params = dict(work.named_parameters())
    grad_sq = {
        k: torch.zeros_like(p, dtype=torch.float64) for k, p in params.items()
    }
    rgn = dict.fromkeys(params, 0.0)
    w_norm = {k: p.detach().double().norm().item() for k, p in params.items()}
    shift = _BNShift(work)
    bar = _progress(num_batches, desc, progress)
    try:
        for i in range(num_batches):
            work.zero_grad(set_to_none=True)
            loss = _checked_loss(work, next(batches), f'number {i}')
            loss.backward()
            for k, p in params.items():
                if p.grad is None:
                    continue
                g = p.grad.detach().double()
                grad_sq[k] += g.square()
                rgn[k] += g.norm().item() / (w_norm[k] + EPS)
            bar.update(1)
    finally:
        shift.remove()
        bar.close()
    fisher = {
        k: (grad_sq[k] / num_batches * params[k].detach().double().square())
        .mean()
        .item()
        for k in params
    }
    return dict(
        fisher=fisher,
        rgn={k: v / num_batches for k, v in rgn.items()},
        bn_shift=shift.scores(),
    )


def gradient_scores(
    model: nn.Module,
    source: BatchSource,
    levels: Sequence[Level],
    steps: int = 10,
    seed: int = 0,
    progress: bool = True,
    *,
    statistic: str,
) -> Dict[str, float]:
    """Raw scores of one parameter statistic of
    :func:`gradient_statistics` (``'fisher'`` or ``'rgn'``), BN running
    statistics scored by their shift: ``steps`` batches per level, levels
    mixed."""
    torch.manual_seed(seed)
    check_steps_levels(steps, levels)
    stats = gradient_statistics(
        model,
        source.mixed_batches(levels),
        num_batches=steps * len(levels),
        progress=progress,
        desc=statistic,
    )
    out = {}
    for info in list_candidates(model):
        table = stats[statistic] if info.kind == PARAM else stats['bn_shift']
        # A BN layer that never ran (unused branch) has not shifted.
        out[info.name] = table.get(info.name, 0.0)
    return out


fisher_scores = register_scorer(
    'fisher',
    needs_data=True,
    description='params: mean_i(E[g_i^2] * w_i^2) over `steps` distorted '
    'batches per level, eval mode; BN buffers: shift of batch statistics '
    'from the running statistics',
)(partial(gradient_scores, statistic='fisher'))

rgn_scores = register_scorer(
    'rgn',
    needs_data=True,
    description='params: mean over batches of ||g|| / (||w|| + eps), eval '
    'mode; BN buffers: shift of batch statistics from the running '
    'statistics',
)(partial(gradient_scores, statistic='rgn'))


@register_scorer(
    'bn',
    normalised=False,
    full_set=True,
    description='1 for BatchNorm affine params and running stats, else 0',
)
def bn_scores(model: nn.Module, **kwargs) -> Dict[str, float]:
    """1.0 for every BatchNorm tensor, 0.0 for the rest."""
    return {t.name: float(t.is_bn) for t in list_candidates(model)}


@register_scorer(
    'all',
    normalised=False,
    full_set=True,
    description='1 for every tensor',
)
def all_scores(model: nn.Module, **kwargs) -> Dict[str, float]:
    """1.0 for every tensor."""
    return {t.name: 1.0 for t in list_candidates(model)}


@register_scorer(
    'random',
    normalised=False,
    description='uniform random in [0, 1) from the seed (a control)',
)
def random_scores(model: nn.Module, seed: int = 0, **kwargs):
    """Uniform random scores in [0, 1), reproducible from ``seed``."""
    names = [t.name for t in list_candidates(model)]
    values = np.random.default_rng(seed).random(len(names))
    return dict(zip(names, map(float, values)))
