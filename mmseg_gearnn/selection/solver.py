"""Choosing the adaptor's tensors under a byte budget.

Turns scored candidate tensors into knapsack items (a BatchNorm layer's
running statistics and their counter are one item), solves the knapsack
with :mod:`.knapsack` (the exact DP and the greedy comparison) and reports
the choice over tensors.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..models.adaptor_tensors import BN_STATS
from .budget import check_quantised_fit, selectable_candidates
from .candidates import BN_BUFFER, TensorInfo
from .knapsack import (
    DEFAULT_MAX_UNITS,
    KnapsackResult,
    default_granularity,
    greedy,
    knapsack,
)

#: How the knapsack values a tensor: ``'tensor'``, its score; ``'element'``,
#: its score times its number of elements (the score read as a density,
#: so the budget goes to the most sensitive bytes whatever the tensor
#: sizes, convolution kernels included, rather than to as many small
#: tensors as fit).
KNAPSACK_VALUES = ('tensor', 'element')
DEFAULT_KNAPSACK_VALUE = 'tensor'

#: Bytes of a BN layer's ``num_batches_tracked`` counter (int64), which an
#: adaptor holding the layer's statistics carries too.
BN_COUNTER_BYTES = 8


@dataclass
class SelectionOutcome:
    """What :func:`select_tensors` chose, and how.

    Attributes:
        selected (list[str]): names of the chosen tensors.
        solver (str): ``'dp'``, ``'greedy'`` (when the greedy answer on
            true sizes beat the DP on quantised sizes) or ``'full_set'``.
        dp (KnapsackResult): the DP answer.
        greedy (KnapsackResult): the greedy answer.
        granularity (int): the DP's size unit in bytes.
        budget_respected (bool): whether the selection was bound by the
            budget (False for a full-set method such as ``bn`` / ``all``
            unless asked).
    """

    selected: List[str]
    solver: str
    dp: KnapsackResult
    greedy: KnapsackResult
    granularity: int
    budget_respected: bool


def check_knapsack_value(value: str) -> None:
    """Raise unless ``value`` is one of :data:`KNAPSACK_VALUES`."""
    if value not in KNAPSACK_VALUES:
        raise ValueError(
            f'unknown knapsack value {value!r}; choose from {KNAPSACK_VALUES}'
        )


def knapsack_items(infos: Sequence[TensorInfo]) -> List[Tuple[List[int], int]]:
    """The knapsack's items: (indices into ``infos``, bytes).

    A BN layer's ``running_mean`` and ``running_var`` form one item with
    its ``num_batches_tracked`` counter: a gear that adapts the layer's
    statistics runs it in train mode, which updates all three, so they are
    chosen, and paid for, together. Every other tensor is its own item.
    """
    position = {t.name: i for i, t in enumerate(infos)}
    items, grouped = [], set()
    for i, t in enumerate(infos):
        if i in grouped:
            continue
        prefix, _, leaf = t.name.rpartition('.')
        if t.kind == BN_BUFFER and leaf in BN_STATS:
            idx = [
                position[f'{prefix}.{stat}' if prefix else stat]
                for stat in BN_STATS
                if (f'{prefix}.{stat}' if prefix else stat) in position
            ]
            grouped.update(idx)
            size = sum(infos[j].bytes for j in idx) + BN_COUNTER_BYTES
            items.append((idx, size))
        else:
            items.append(([i], t.bytes))
    return items


def adaptor_bytes(infos: Sequence[TensorInfo], selected: Sequence[str]) -> int:
    """Bytes an adaptor of the ``selected`` tensors holds: theirs, plus the
    counter of each BN layer whose statistics it holds."""
    chosen = set(selected)
    used = sum(t.bytes for t in infos if t.name in chosen)
    used += BN_COUNTER_BYTES * len(
        {
            t.name.rpartition('.')[0]
            for t in infos
            if t.name in chosen and t.kind == BN_BUFFER
        }
    )
    return int(used)


def _to_tensors(result: KnapsackResult, items) -> KnapsackResult:
    indices = sorted(j for i in result.indices for j in items[i][0])
    return KnapsackResult(
        indices=indices,
        total_value=result.total_value,
        total_size=result.total_size,
        capacity=result.capacity,
        granularity=result.granularity,
    )


def select_tensors(
    infos: Sequence[TensorInfo],
    scores: Dict[str, float],
    budget_bytes: int,
    granularity: Optional[int] = None,
    full_set: bool = False,
    excluded_modules: Sequence[str] = (),
    value: str = DEFAULT_KNAPSACK_VALUE,
) -> SelectionOutcome:
    """Choose tensors maximising the total score under a byte budget.

    Solves the 0/1 knapsack exactly by DP over sizes in units of
    ``granularity`` bytes (sizes rounded up, budget down: the budget is
    never exceeded), and greedily by score per byte on true sizes. The DP
    answer is kept unless quantisation made it score below the greedy one,
    in which case the greedy answer is kept (``solver='greedy'``).

    Args:
        infos (Sequence[TensorInfo]): the candidates.
        scores (dict[str, float]): the value of each candidate.
        budget_bytes (int): the budget.
        granularity (int, optional): the DP unit in bytes; default
            :func:`~.knapsack.default_granularity` (at most 16384 units).
        full_set (bool): select every tensor of score > 0 regardless of the
            budget (the ``bn`` and ``all`` baselines); the knapsack answers
            are still computed for the record.
        excluded_modules (Sequence[str]): modules (by name) whose tensors
            the knapsack may not choose, e.g. the training-only
            ``auxiliary_head`` (see
            :func:`~.candidates.training_only_modules`).
        value (str): a tensor's knapsack value, one of
            :data:`KNAPSACK_VALUES`: ``'tensor'``, its score;
            ``'element'``, its score times its number of elements.

    Returns:
        SelectionOutcome: the choice.

    Raises:
        ValueError: if no candidate fits the (quantised) budget, or
            ``value`` is unknown.
    """
    check_knapsack_value(value)
    infos = list(infos)
    selectable = selectable_candidates(infos, excluded_modules)
    kept = {t.name for t in selectable}
    items = [
        (idx, size)
        for idx, size in knapsack_items(infos)
        if all(infos[i].name in kept for i in idx)
    ]
    sizes = [size for _, size in items]
    per_element = value == 'element'
    values = [
        sum(
            scores[infos[i].name] * (infos[i].numel if per_element else 1)
            for i in idx
        )
        for idx, _ in items
    ]
    if granularity is None:
        granularity = default_granularity(budget_bytes, DEFAULT_MAX_UNITS)
    if not full_set:
        check_quantised_fit(selectable, budget_bytes, granularity)
    # Solved over items, reported over tensors.
    dp = _to_tensors(knapsack(sizes, values, budget_bytes, granularity), items)
    gr = _to_tensors(greedy(sizes, values, budget_bytes), items)
    if full_set:
        chosen = [t.name for t in infos if scores[t.name] > 0]
        solver = 'full_set'
    elif gr.total_value > dp.total_value:
        chosen = [infos[i].name for i in gr.indices]
        solver = 'greedy'
    else:
        chosen = [infos[i].name for i in dp.indices]
        solver = 'dp'
    return SelectionOutcome(
        selected=chosen,
        solver=solver,
        dp=dp,
        greedy=gr,
        granularity=int(granularity),
        budget_respected=not full_set,
    )
