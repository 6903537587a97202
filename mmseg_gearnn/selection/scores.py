"""The registry of scoring methods, score normalisation, and
:func:`compute_scores`, which runs a registered method by name.

A scoring method is a function registered with :func:`register_scorer`
together with what it needs and how its scores are used (see
:class:`Scorer`); the methods themselves live in :mod:`.scorers`.

Comparable scores (``normalize``): parameters and BatchNorm buffers are two
score *families* measured in different units, so the knapsack values are
normalised within each family (``'param'``, ``'bn_buffer'``):
``'rank'`` (default) maps a raw score to its percentile rank in its family,
``rank / n`` in (0, 1] with ties averaged, and a raw score of exactly 0 to
0; ``'max'`` divides by the family's largest raw score; ``'none'`` keeps
raw scores. Methods registered with ``normalised=False`` (``bn``, ``all``,
``random``) are never normalised.
"""

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import print_log

from .candidates import BN_BUFFER, PARAM, list_candidates
from .data import BatchSource, Level

#: Normalisation modes and what each does (written into selection files).
NORMALIZATION_DOCS = dict(
    rank='per family (param, bn_buffer): percentile rank rank/n in (0, 1], '
    'ties averaged, a raw score of 0 stays 0',
    max='per family (param, bn_buffer): raw score / largest raw score of '
    'the family',
    none='raw scores, families not made comparable',
)
NORMALIZATIONS = tuple(NORMALIZATION_DOCS)
DEFAULT_NORMALIZE = 'rank'


@dataclass(frozen=True)
class Scorer:
    """A registered scoring method and its properties.

    Calling it calls ``fn``.

    Attributes:
        name (str): the method name.
        fn (Callable): ``fn(model, source, levels, steps, seed, progress,
            **options) -> dict[name, raw score]`` when ``needs_data``, else
            ``fn(model, seed, **options)``.
        needs_data (bool): it reads distorted batches: a
            :class:`~.data.BatchSource`, levels and ``steps`` per level.
        normalised (bool): its raw scores are normalised per family into
            knapsack values; False keeps them as they are.
        full_set (bool): the selection takes every tensor it scores above
            0 instead of solving the knapsack (a baseline), unless asked
            to respect the budget.
        options (tuple[str]): the keyword options it takes (e.g. ``lr``).
        description (str): one line on what it computes, written into
            selection files.
    """

    name: str
    fn: Callable[..., Dict[str, float]]
    needs_data: bool = False
    normalised: bool = True
    full_set: bool = False
    options: Tuple[str, ...] = ()
    description: str = ''

    def __call__(self, *args, **kwargs) -> Dict[str, float]:
        return self.fn(*args, **kwargs)


#: name -> :class:`Scorer`.
SCORERS: Dict[str, Scorer] = {}


def register_scorer(
    name: str,
    *,
    needs_data: bool = False,
    normalised: bool = True,
    full_set: bool = False,
    options: Sequence[str] = (),
    description: str = '',
):
    """Decorator adding a scoring function to :data:`SCORERS` with its
    properties (see :class:`Scorer`).

    Example::

        @register_scorer('fisher', needs_data=True, description='...')
        def fisher_scores(model, source, levels, steps, seed, progress):
            ...
    """

    def wrap(fn):
        if name in SCORERS:
            raise KeyError(f'scoring method {name!r} is already registered')
        SCORERS[name] = Scorer(
            name=name,
            fn=fn,
            needs_data=needs_data,
            normalised=normalised,
            full_set=full_set,
            options=tuple(options),
            description=description,
        )
        return fn

    return wrap


def get_scorer(method: str) -> Scorer:
    """The registered scoring method ``method``.

    Raises:
        ValueError: if no method of that name is registered.
    """
    if method not in SCORERS:
        raise ValueError(
            f'unknown scoring method {method!r}; choose from {sorted(SCORERS)}'
        )
    return SCORERS[method]


def available_methods() -> List[str]:
    """Names of the registered scoring methods."""
    return sorted(SCORERS)


@dataclass
class ScoreResult:
    """Scores of one method for every candidate tensor.

    Attributes:
        method (str): the method name.
        scores (dict[str, float]): normalised scores (knapsack values).
        raw_scores (dict[str, float]): scores before normalisation.
        normalize (str): the normalisation applied to ``raw_scores``.
        options (dict): what the method ran with (levels, steps, ...).
    """

    method: str
    scores: Dict[str, float]
    raw_scores: Dict[str, float]
    normalize: str
    options: dict = field(default_factory=dict)


def check_steps_levels(steps: int, levels: Sequence[Level]) -> None:
    """Raise unless ``steps`` is an integer >= 1 and ``levels`` is not
    empty."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f'steps must be an integer >= 1, got {steps}')
    if not levels:
        raise ValueError(
            'no distortion level to score on: the distortion space or the '
            'level subset is empty'
        )


def normalize_scores(
    raw: Dict[str, float], kinds: Dict[str, str], mode: str
) -> Dict[str, float]:
    """Make the score families comparable (see the module docstring).

    Args:
        raw (dict[str, float]): raw score per tensor.
        kinds (dict[str, str]): family per tensor (``'param'`` or
            ``'bn_buffer'``).
        mode (str): ``'rank'``, ``'max'`` or ``'none'``.

    Returns:
        dict[str, float]: normalised score per tensor.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(
            f'unknown normalisation {mode!r}; choose from {NORMALIZATIONS}'
        )
    if mode == 'none':
        return dict(raw)
    out = {}
    for family in (PARAM, BN_BUFFER):
        names = [n for n in raw if kinds[n] == family]
        if not names:
            continue
        values = np.array([raw[n] for n in names], dtype=np.float64)
        if mode == 'max':
            top = values.max()
            norm = values / top if top > 0 else np.zeros_like(values)
        else:
            norm = _average_ranks(values) / len(values)
            norm[values == 0] = 0.0
        out.update(zip(names, map(float, norm)))
    return {name: out[name] for name in raw}


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n (smallest first), ties given their average rank."""
    order = np.argsort(values, kind='stable')
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def compute_scores(
    method: str,
    model: nn.Module,
    source: Optional[BatchSource] = None,
    levels: Optional[Sequence[Level]] = None,
    steps: int = 10,
    seed: int = 0,
    normalize: str = DEFAULT_NORMALIZE,
    progress: bool = True,
    **options,
) -> ScoreResult:
    """Score every candidate tensor of ``model`` with a named method.

    Args:
        method (str): a key of :data:`SCORERS`, e.g. ``'weight_change'``,
            ``'fisher'``, ``'rgn'``, ``'bn'``, ``'all'`` or ``'random'``.
        model (nn.Module): the segmentor (with ``data_preprocessor``); never
            modified.
        source (BatchSource, optional): distorted batches; required by the
            methods that need data (``weight_change``, ``fisher``, ``rgn``).
        levels (Sequence[tuple], optional): (type, level) pairs to score
            on; required by the methods that need data.
        steps (int): steps (weight_change) or batches (fisher, rgn) per
            level.
        seed (int): the seed of every random draw.
        normalize (str): ``'rank'``, ``'max'`` or ``'none'``; ignored by
            the methods registered with ``normalised=False``.
        progress (bool): show a progress bar.
        **options: method options (``lr``, ``momentum`` for
            weight_change).

    Returns:
        ScoreResult: finite normalised and raw scores for every candidate.

    Raises:
        ValueError: unknown method or normalisation, or missing data.
        FloatingPointError: a non-finite loss or score.
    """
    scorer = get_scorer(method)
    if normalize not in NORMALIZATIONS:
        raise ValueError(
            f'unknown normalisation {normalize!r}; choose from '
            f'{NORMALIZATIONS}'
        )
    levels = [tuple(lv) for lv in levels] if levels is not None else None
    run_options = dict(options)
    if scorer.needs_data:
        if source is None:
            raise ValueError(f'method {method!r} needs a BatchSource')
        check_steps_levels(steps, levels or [])
        run_options.update(levels=[list(lv) for lv in levels], steps=steps)
        raw = scorer(
            model,
            source=source,
            levels=levels,
            steps=steps,
            seed=seed,
            progress=progress,
            **options,
        )
    else:
        raw = scorer(model, seed=seed, **options)
    infos = list_candidates(model)
    missing = [t.name for t in infos if t.name not in raw]
    if missing:
        raise RuntimeError(f'method {method!r} did not score {missing}')
    raw = {t.name: float(raw[t.name]) for t in infos}
    bad = [n for n, v in raw.items() if not math.isfinite(v) or v < 0]
    if bad:
        raise FloatingPointError(
            f'method {method!r} gave non-finite or negative scores to '
            f'{bad[:10]}{" ..." if len(bad) > 10 else ""}'
        )
    mode = normalize if scorer.normalised else 'none'
    scores = normalize_scores(raw, {t.name: t.kind for t in infos}, mode)
    print_log(
        f'scored {len(infos)} tensors with {method!r} ({mode} normalisation)',
        logger='current',
    )
    return ScoreResult(
        method=method,
        scores=scores,
        raw_scores=raw,
        normalize=mode,
        options=run_options,
    )


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
