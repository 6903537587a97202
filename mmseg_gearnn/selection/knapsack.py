"""0/1 knapsack over tensor sizes: the exact DP and the greedy answer.

The DP works on sizes in units of ``granularity`` bytes. Every size is
rounded **up** to whole units and the capacity **down**, so whatever the
DP picks fits the true budget: ``sum(true sizes) <= capacity`` always. The
answer is exactly optimal for the quantised sizes; with ``granularity=1``
it is exactly optimal, full stop.
"""

import math
from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np

#: The default granularity keeps the DP capacity at most this many units,
#: so its decision table is ``num_items x 16385`` booleans (6.5 MB for 400
#: tensors) and its run time is that many vectorised additions.
DEFAULT_MAX_UNITS = 16384

#: Granularities are multiples of this many bytes (one float32 element).
GRANULARITY_ALIGN = 4


@dataclass
class KnapsackResult:
    """A chosen subset of items.

    Attributes:
        indices (list[int]): chosen item indices, ascending.
        total_value (float): sum of their values.
        total_size (int): sum of their true (unquantised) sizes.
        capacity (int): the capacity it was solved for, in true units.
        granularity (int): the quantisation unit (1 for greedy).
    """

    indices: List[int] = field(default_factory=list)
    total_value: float = 0.0
    total_size: int = 0
    capacity: int = 0
    granularity: int = 1


def default_granularity(
    capacity: int,
    max_units: int = DEFAULT_MAX_UNITS,
    align: int = GRANULARITY_ALIGN,
) -> int:
    """The smallest multiple of ``align`` bytes that keeps the DP capacity
    at ``max_units`` units or fewer.

    Args:
        capacity (int): the budget in bytes.
        max_units (int): most units the DP table may have.
        align (int): granularities are multiples of this.

    Returns:
        int: the smallest ``g``, a multiple of ``align``, with
        ``capacity // g <= max_units``.
    """
    if max_units < 1 or align < 1:
        raise ValueError('max_units and align must be >= 1')
    if capacity < 0:
        raise ValueError(f'capacity must be >= 0, got {capacity}')
    return align * (capacity // ((max_units + 1) * align) + 1)


def _check(sizes: Sequence[int], values: Sequence[float], capacity: int):
    if len(sizes) != len(values):
        raise ValueError(
            f'sizes and values differ in length: {len(sizes)} vs {len(values)}'
        )
    if capacity < 0:
        raise ValueError(f'capacity must be >= 0, got {capacity}')
    sizes = [int(s) for s in sizes]
    if any(s <= 0 for s in sizes):
        raise ValueError('every size must be a positive integer')
    values = [float(v) for v in values]
    if not all(math.isfinite(v) for v in values):
        raise ValueError('every value must be finite')
    return sizes, values


def _result(indices, sizes, values, capacity, granularity) -> KnapsackResult:
    indices = sorted(indices)
    return KnapsackResult(
        indices=indices,
        total_value=float(sum(values[i] for i in indices)),
        total_size=int(sum(sizes[i] for i in indices)),
        capacity=int(capacity),
        granularity=int(granularity),
    )


def knapsack(
    sizes: Sequence[int],
    values: Sequence[float],
    capacity: int,
    granularity: int = 1,
) -> KnapsackResult:
    """Exact 0/1 knapsack by dynamic programming.

    Maximises the sum of values of the chosen items subject to the sum of
    their sizes, each rounded up to a multiple of ``granularity``, being at
    most ``capacity`` rounded down to a multiple of ``granularity``. Items
    of value <= 0 are never chosen; ties go to the earlier items.

    Args:
        sizes (Sequence[int]): positive item sizes (bytes).
        values (Sequence[float]): finite item values (scores).
        capacity (int): the budget, in the same unit as ``sizes``.
        granularity (int): the quantisation unit, >= 1.

    Returns:
        KnapsackResult: the optimal subset; its ``total_size`` (true sizes)
        never exceeds ``capacity``.
    """
    sizes, values = _check(sizes, values, capacity)
    if int(granularity) != granularity or granularity < 1:
        raise ValueError(f'granularity must be an integer >= 1: {granularity}')
    granularity = int(granularity)
    cap = capacity // granularity
    units = [math.ceil(s / granularity) for s in sizes]
    best = np.zeros(cap + 1, dtype=np.float64)
    keep = np.zeros((len(sizes), cap + 1), dtype=bool)
    for i, (u, v) in enumerate(zip(units, values)):
        if u > cap or v <= 0:
            continue
        candidate = best[: cap + 1 - u] + v
        better = candidate > best[u:]
        keep[i, u:] = better
        best[u:] = np.where(better, candidate, best[u:])
    chosen, w = [], cap
    for i in range(len(sizes) - 1, -1, -1):
        if keep[i, w]:
            chosen.append(i)
            w -= units[i]
    return _result(chosen, sizes, values, capacity, granularity)


def greedy(
    sizes: Sequence[int], values: Sequence[float], capacity: int
) -> KnapsackResult:
    """Greedy by value density: take items by ``value / size`` (highest
    first, ties by index) while they fit the true capacity.

    Args:
        sizes (Sequence[int]): positive item sizes.
        values (Sequence[float]): finite item values.
        capacity (int): the budget.

    Returns:
        KnapsackResult: the greedy subset (``granularity`` 1).
    """
    sizes, values = _check(sizes, values, capacity)
    order = sorted(
        (i for i in range(len(sizes)) if values[i] > 0),
        key=lambda i: (-values[i] / sizes[i], i),
    )
    chosen, left = [], capacity
    for i in order:
        if sizes[i] <= left:
            chosen.append(i)
            left -= sizes[i]
    return _result(chosen, sizes, values, capacity, 1)
