"""The selection budget: checking an adaptor given by budget, resolving
it to bytes and checking, before any scoring, that a candidate tensor can
fit it."""

import math
from typing import List, Optional, Sequence

from ..models.adaptor import budget_request
from .candidates import TensorInfo, in_modules
from .knapsack import default_granularity
from .scores import available_methods, get_scorer

#: The options of a budget adaptor besides ``budget`` and ``method``:
#: keyword arguments of :func:`~.select.run_selection`.
SELECTION_OPTIONS = (
    'steps',
    'levels',
    'seed',
    'normalize',
    'granularity',
    'respect_budget',
    'exclude_modules',
    'value',
)


def check_budget_request(adaptor: dict) -> dict:
    """An adaptor given by budget (``model.adaptor=dict(budget=0.002,
    method='fisher', ...)``), checked whole: the budget a fraction of the
    model bytes in (0, 1] (the model's own check,
    :func:`~mmseg_gearnn.models.adaptor.budget_request`), ``method`` a
    registered scoring method (``'fisher'`` if unset), every other key an
    option of the selection (:data:`SELECTION_OPTIONS`) or of the method.

    Returns:
        dict: the request, its method filled in.

    Raises:
        ValueError: naming the bad budget, method or option.
    """
    request = budget_request(adaptor)
    method = request['method']
    if method not in available_methods():
        raise ValueError(
            f'unknown adaptor selection method {method!r}; choose from '
            f'{available_methods()}'
        )
    allowed = {'budget', 'method', *SELECTION_OPTIONS}
    allowed |= set(get_scorer(method).options)
    unknown = sorted(set(request) - allowed)
    if unknown:
        raise ValueError(
            f'unknown option(s) {unknown} of the adaptor by budget; '
            f'{method!r} takes {sorted(allowed)}'
        )
    return request


def resolve_budget(
    total_bytes: int,
    fraction: Optional[float] = None,
    nbytes: Optional[int] = None,
) -> dict:
    """The budget as both a fraction of the model and bytes.

    Args:
        total_bytes (int): bytes of the whole model.
        fraction (float, optional): budget as a fraction in (0, 1].
        nbytes (int, optional): budget in bytes. Give exactly one.

    Returns:
        dict: ``asked_fraction`` and ``asked_bytes`` (a fraction is turned
        into bytes rounding down, so the budget is never exceeded).
    """
    if (fraction is None) == (nbytes is None):
        raise ValueError(
            'give the budget either as a fraction of the model (--budget) '
            'or in bytes (--budget-bytes), not both or neither'
        )
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(
                f'the budget fraction must be in (0, 1], got {fraction}'
            )
        asked = int(math.floor(fraction * total_bytes))
        return dict(asked_fraction=float(fraction), asked_bytes=asked)
    if int(nbytes) != nbytes or nbytes <= 0:
        raise ValueError(f'the budget in bytes must be > 0, got {nbytes}')
    return dict(
        asked_fraction=int(nbytes) / total_bytes, asked_bytes=int(nbytes)
    )


def check_budget(
    infos: Sequence[TensorInfo], budget_bytes: int, total_bytes: int
) -> None:
    """Raise if not even the smallest candidate fits the budget."""
    smallest = min(infos, key=lambda t: t.bytes)
    if budget_bytes < smallest.bytes:
        raise ValueError(
            f'the budget of {budget_bytes} bytes '
            f"({budget_bytes / total_bytes:.6f} of the model's "
            f'{total_bytes} bytes) is smaller than the smallest candidate '
            f'tensor, {smallest.name} ({smallest.bytes} bytes), so no '
            'tensor fits: raise --budget to at least '
            f'{smallest.bytes / total_bytes:.6f} or --budget-bytes to at '
            f'least {smallest.bytes}'
        )


def selectable_candidates(
    infos: Sequence[TensorInfo], excluded_modules: Sequence[str]
) -> List[TensorInfo]:
    """The candidates outside ``excluded_modules``; raise if none is."""
    kept = [t for t in infos if not in_modules(t.name, excluded_modules)]
    if not kept:
        raise ValueError(
            'every candidate tensor lies in the excluded modules '
            f'{list(excluded_modules)}: nothing is left to select'
        )
    return kept


def check_quantised_fit(
    infos: Sequence[TensorInfo], budget_bytes: int, granularity: int
) -> None:
    """Raise if no candidate fits the budget once sizes are rounded up and
    the budget down to the knapsack granularity."""
    units = budget_bytes // granularity
    if not any(math.ceil(t.bytes / granularity) <= units for t in infos):
        raise ValueError(
            f'no candidate tensor fits the budget of {budget_bytes} '
            f'bytes at a knapsack granularity of {granularity} bytes '
            '(sizes are rounded up to it, the budget down): lower '
            '--granularity-bytes or raise the budget'
        )


def check_fits(
    infos: Sequence[TensorInfo],
    exclude_modules: Sequence[str],
    budget_info: dict,
    total_bytes: int,
    granularity: Optional[int],
) -> None:
    """Raise unless a selectable candidate fits the asked budget, on true
    sizes and at the knapsack granularity."""
    asked = budget_info['asked_bytes']
    selectable = selectable_candidates(infos, exclude_modules)
    check_budget(selectable, asked, total_bytes)
    check_quantised_fit(
        selectable, asked, granularity or default_granularity(asked)
    )
