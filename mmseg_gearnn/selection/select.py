"""Budgeted adaptor selection: scores -> knapsack -> a selection file.

The selection file (JSON, ``format_version`` 1) records which tensors form
the adaptor, and everything needed to judge and reproduce it: the scores of
every candidate, the budget asked and used, the knapsack granularity,
value (:data:`KNAPSACK_VALUES`) and greedy comparison, the model size, the
distortion space, the base checkpoint's fingerprint, the config and the
seed.
"""

import copy
import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.logging import print_log

from ..distortions import DistortionSpace, build_space
from ..utils.io import atomic_write
from .base_weights import file_fingerprint, load_base_checkpoint
from .candidates import (
    BN_BUFFER,
    BN_STAT_NAMES,
    TensorInfo,
    in_modules,
    list_candidates,
    model_total_bytes,
    training_only_modules,
)
from .data import BatchSource, DataloaderBatchSource, parse_levels
from .knapsack import (
    DEFAULT_MAX_UNITS,
    KnapsackResult,
    default_granularity,
    greedy,
    knapsack,
)
from .scores import (
    DATA_METHODS,
    DEFAULT_NORMALIZE,
    METHOD_DOCS,
    NORMALIZATION_DOCS,
    ScoreResult,
    compute_scores,
    seed_everything,
)

FORMAT_VERSION = 1
#: Methods that select a fixed set (every tensor they score above 0)
#: rather than solving the knapsack, unless asked to respect the budget.
FULL_SET_METHODS = ('bn', 'all')
#: How the knapsack values a tensor: ``'tensor'``, its score; ``'element'``,
#: its score times its number of elements (the score read as a density,
#: so the budget goes to the most sensitive bytes whatever the tensor
#: sizes, convolution kernels included, rather than to as many small
#: tensors as fit).
KNAPSACK_VALUES = ('tensor', 'element')
DEFAULT_KNAPSACK_VALUE = 'tensor'
REQUIRED_KEYS = (
    'format_version',
    'method',
    'tensors',
    'selected',
    'budget',
    'distortion_space',
    'model_total_bytes',
)


def space_from_config(cfg) -> DistortionSpace:
    """The distortion space of a config: its top-level ``distortion_space``.

    Raises:
        ValueError: if the key is absent or the space is empty.
    """
    space = cfg.get('distortion_space', None)
    if space is None:
        raise ValueError(
            'the config has no top-level `distortion_space`: inherit one of '
            'configs/_base_/distortions/*.py or set e.g. '
            'distortion_space = dict(distortions=dict(jpeg=[40, 20, 10]))'
        )
    if not space or not dict(space).get('distortions'):
        raise ValueError(
            'the distortion space of the config is empty: '
            f'distortion_space = {space!r}; give at least one type with '
            'levels, e.g. distortions=dict(jpeg=[40, 20, 10])'
        )
    return build_space(space)


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
            budget (False for ``bn`` / ``all`` unless asked).
    """

    selected: List[str]
    solver: str
    dp: KnapsackResult
    greedy: KnapsackResult
    granularity: int
    budget_respected: bool


#: Bytes of a BN layer's ``num_batches_tracked`` counter (int64), which an
#: adaptor holding the layer's statistics carries too.
BN_COUNTER_BYTES = 8


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
        if t.kind == BN_BUFFER and leaf in BN_STAT_NAMES:
            idx = [
                position[f'{prefix}.{stat}' if prefix else stat]
                for stat in BN_STAT_NAMES
                if (f'{prefix}.{stat}' if prefix else stat) in position
            ]
            grouped.update(idx)
            size = sum(infos[j].bytes for j in idx) + BN_COUNTER_BYTES
            items.append((idx, size))
        else:
            items.append(([i], t.bytes))
    return items


def _to_tensors(result: KnapsackResult, items) -> KnapsackResult:
    indices = sorted(j for i in result.indices for j in items[i][0])
    return KnapsackResult(
        indices=indices,
        total_value=result.total_value,
        total_size=result.total_size,
        capacity=result.capacity,
        granularity=result.granularity,
    )


def check_knapsack_value(value: str) -> None:
    if value not in KNAPSACK_VALUES:
        raise ValueError(
            f'unknown knapsack value {value!r}; choose from {KNAPSACK_VALUES}'
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


def build_record(
    *,
    method: str,
    score_result: ScoreResult,
    infos: Sequence[TensorInfo],
    outcome: SelectionOutcome,
    budget: dict,
    total_bytes: int,
    space: DistortionSpace,
    checkpoint: Optional[dict] = None,
    config: Optional[str] = None,
    seed: Optional[int] = None,
    excluded_modules: Sequence[str] = (),
    value: str = DEFAULT_KNAPSACK_VALUE,
) -> dict:
    """The selection file's content (see :data:`FORMAT_VERSION`)."""
    chosen = set(outcome.selected)
    used = sum(t.bytes for t in infos if t.name in chosen)
    # Each BN layer whose statistics are chosen also carries its counter.
    used += BN_COUNTER_BYTES * len(
        {
            t.name.rpartition('.')[0]
            for t in infos
            if t.name in chosen and t.kind == BN_BUFFER
        }
    )
    names = [t.name for t in infos]

    def names_of(result: KnapsackResult) -> List[str]:
        return [names[i] for i in result.indices]

    dp_names, greedy_names = names_of(outcome.dp), names_of(outcome.greedy)
    return dict(
        format_version=FORMAT_VERSION,
        method=method,
        method_description=METHOD_DOCS.get(method, ''),
        method_options=score_result.options,
        normalisation=dict(
            mode=score_result.normalize,
            description=NORMALIZATION_DOCS[score_result.normalize],
        ),
        seed=seed,
        config=None if config is None else str(config),
        checkpoint=checkpoint,
        distortion_space=space.to_dict(),
        model_total_bytes=int(total_bytes),
        budget=dict(
            asked_fraction=budget['asked_fraction'],
            asked_bytes=budget['asked_bytes'],
            used_bytes=int(used),
            used_fraction=used / total_bytes,
            respected=outcome.budget_respected,
        ),
        granularity_bytes=outcome.granularity,
        knapsack_value=value,
        solver=outcome.solver,
        # Summed in the selection's order, not the set's: a set of strings
        # iterates in an order that changes with PYTHONHASHSEED, and so
        # would the last digits of a float sum.
        total_score=float(
            sum(score_result.scores[n] for n in outcome.selected)
        ),
        num_candidates=len(infos),
        excluded_modules=list(excluded_modules),
        num_selected=len(outcome.selected),
        selected=list(outcome.selected),
        greedy_comparison=dict(
            dp_total_score=outcome.dp.total_value,
            dp_used_bytes=outcome.dp.total_size,
            greedy_total_score=outcome.greedy.total_value,
            greedy_used_bytes=outcome.greedy.total_size,
            dp_minus_greedy=outcome.dp.total_value
            - outcome.greedy.total_value,
            only_in_dp=sorted(set(dp_names) - set(greedy_names)),
            only_in_greedy=sorted(set(greedy_names) - set(dp_names)),
        ),
        tensors=[
            dict(
                name=t.name,
                numel=t.numel,
                bytes=t.bytes,
                kind=t.kind,
                is_bn=t.is_bn,
                score=score_result.scores[t.name],
                raw_score=score_result.raw_scores[t.name],
                selected=t.name in chosen,
                excluded=in_modules(t.name, excluded_modules),
            )
            for t in infos
        ],
    )


def save_selection(record: dict, path: str) -> str:
    """Write a selection file atomically (temporary file + rename).

    Returns:
        str: ``path``.
    """
    return atomic_write(path, json.dumps(record, indent=2) + '\n')


def load_selection(
    path: str, model: Optional[nn.Module] = None, space=None
) -> dict:
    """Read and validate a selection file.

    Args:
        path (str): the JSON file.
        model (nn.Module, optional): check that every tensor of the file
            is a candidate of this model with the same number of elements.
        space (dict | DistortionSpace, optional): check that the file was
            computed for this distortion space.

    Returns:
        dict: the selection record.

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed file, or a mismatch with ``model`` / ``space``
            (every mismatching name listed).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'selection file not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'{path} is not valid JSON: {e}') from e
    if not isinstance(record, dict):
        raise ValueError(f'{path} is not a selection file (not an object)')
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f'{path} is not a selection file: lacks {missing}')
    if record['format_version'] != FORMAT_VERSION:
        raise ValueError(
            f'{path} has format_version {record["format_version"]!r}; '
            f'this code reads format_version {FORMAT_VERSION}'
        )
    tensors = record['tensors']
    if not isinstance(tensors, list) or not all(
        isinstance(t, dict) and {'name', 'numel', 'selected'} <= set(t)
        for t in tensors
    ):
        raise ValueError(
            f"{path}: 'tensors' must be a list of objects with name, "
            'numel and selected'
        )
    numel = {t['name']: t['numel'] for t in tensors}
    flagged = [t['name'] for t in tensors if t['selected']]
    if sorted(flagged) != sorted(record['selected']):
        raise ValueError(
            f"{path}: 'selected' and the tensors flagged selected differ"
        )
    if model is not None:
        _check_model(path, numel, model)
    if space is not None:
        expected, found = build_space(space), record['distortion_space']
        if build_space(found) != expected:
            raise ValueError(
                f'{path} was computed for the distortion space {found}, '
                f'not for {expected.to_dict()}'
            )
    return record


def _check_model(path: str, numel: Dict[str, int], model: nn.Module):
    have = {t.name: t.numel for t in list_candidates(model)}
    absent = [n for n in numel if n not in have]
    wrong = [
        f'{n} (file {numel[n]}, model {have[n]})'
        for n in numel
        if n in have and have[n] != numel[n]
    ]
    if absent or wrong:
        lines = [f'{path} does not match the model:']
        if absent:
            lines.append(
                f'  tensors not in the model ({len(absent)}): '
                + ', '.join(absent)
            )
        if wrong:
            lines.append(
                f'  element counts differ ({len(wrong)}): ' + ', '.join(wrong)
            )
        raise ValueError('\n'.join(lines))


def format_selection_table(record: dict, top: int = 20) -> str:
    """A readable summary: the ``top`` tensors by score, selection marks,
    and the totals."""
    tensors = sorted(record['tensors'], key=lambda t: (-t['score'], t['name']))
    width = max([len(t['name']) for t in tensors[:top]] + [4])
    head = (
        f'{"rank":>4}  {"sel":^3}  {"score":>8}  {"raw":>10}  '
        f'{"kind":<9}  {"bytes":>10}  {"name":<{width}}'
    )
    lines = [
        f'adaptor selection: method={record["method"]}, '
        f'normalisation={record["normalisation"]["mode"]}, '
        f'solver={record["solver"]}',
        head,
        '-' * len(head),
    ]
    for rank, t in enumerate(tensors[:top], 1):
        lines.append(
            f'{rank:>4}  {"*" if t["selected"] else "":^3}  '
            f'{t["score"]:>8.4f}  {t["raw_score"]:>10.3e}  '
            f'{t["kind"]:<9}  {t["bytes"]:>10,}  {t["name"]:<{width}}'
        )
    if len(tensors) > top:
        lines.append(f'... {len(tensors) - top} more tensors')
    b, g = record['budget'], record['greedy_comparison']
    lines += [
        f'selected {record["num_selected"]} of {record["num_candidates"]} '
        f'tensors: {b["used_bytes"]:,} bytes used of '
        f'{b["asked_bytes"]:,} asked ({b["used_fraction"]:.4%} used, '
        f'{b["asked_fraction"]:.4%} asked, of {record["model_total_bytes"]:,}'
        ' model bytes)' + ('' if b['respected'] else ', budget not applied'),
        f'knapsack (granularity {record["granularity_bytes"]} bytes): DP '
        f'score {g["dp_total_score"]:.4f} in {g["dp_used_bytes"]:,} bytes, '
        f'greedy {g["greedy_total_score"]:.4f} in '
        f'{g["greedy_used_bytes"]:,} bytes, DP - greedy '
        f'{g["dp_minus_greedy"]:+.4f}',
    ]
    return '\n'.join(lines)


def run_selection(
    model: nn.Module,
    space,
    method: str,
    *,
    budget: Optional[float] = None,
    budget_bytes: Optional[int] = None,
    source: Optional[BatchSource] = None,
    levels: Optional[Sequence] = None,
    steps: int = 10,
    seed: int = 0,
    normalize: str = DEFAULT_NORMALIZE,
    granularity: Optional[int] = None,
    respect_budget: bool = False,
    exclude_modules: Optional[Sequence[str]] = None,
    value: str = DEFAULT_KNAPSACK_VALUE,
    checkpoint: Optional[str] = None,
    config: Optional[str] = None,
    out: Optional[str] = None,
    progress: bool = True,
    top: int = 20,
    **options,
) -> dict:
    """Score the candidates of a segmentor, select the adaptor, record it.

    Args:
        model (nn.Module): the segmentor with its base weights loaded.
        space (dict | DistortionSpace): the distortion space.
        method (str): a scoring method (see :mod:`.scores`).
        budget (float, optional): budget as a fraction of the model bytes.
        budget_bytes (int, optional): budget in bytes (give one of the
            two).
        source (BatchSource, optional): distorted batches (data methods).
        levels (Sequence, optional): level subset (see
            :func:`~.data.parse_levels`); every distorted gear if None.
        steps (int): steps / batches per level (data methods).
        seed (int): seeds everything.
        normalize (str): score normalisation (see :mod:`.scores`).
        granularity (int, optional): knapsack unit in bytes.
        respect_budget (bool): make ``bn`` / ``all`` solve the knapsack
            instead of selecting their whole set.
        exclude_modules (Sequence[str], optional): modules (by name) whose
            tensors are scored but never selected. None: the modules that
            only feed the training loss
            (:func:`~.candidates.training_only_modules`, e.g.
            ``auxiliary_head``); ``()`` excludes nothing.
        value (str): a tensor's knapsack value (see
            :data:`KNAPSACK_VALUES`).
        checkpoint (str, optional): base checkpoint path, fingerprinted
            into the record.
        config (str, optional): config path, for the record.
        out (str, optional): where to write the selection file.
        progress (bool): show a progress bar while scoring.
        top (int): tensors shown in the logged table.
        **options: method options (``lr``, ``momentum``).

    Returns:
        dict: the selection record (as written to ``out``).
    """
    space = build_space(space)
    check_knapsack_value(value)
    infos = list_candidates(model)
    if not infos:
        raise ValueError('the model has no parameters or BN statistics')
    total = model_total_bytes(model)
    budget_info = resolve_budget(total, budget, budget_bytes)
    if exclude_modules is None:
        exclude_modules = training_only_modules(model)
    exclude_modules = list(exclude_modules)
    unknown = sorted(set(exclude_modules) - dict(model.named_modules()).keys())
    if unknown:
        raise ValueError(
            f'exclude_modules names no module of the model: {unknown}'
        )
    full_set = method in FULL_SET_METHODS and not respect_budget
    if not full_set:
        # Fail before the (costly) scoring.
        check_fits(infos, exclude_modules, budget_info, total, granularity)
    parsed = parse_levels(space, levels) if method in DATA_METHODS else None
    seed_everything(seed)
    result = compute_scores(
        method,
        model,
        source=source,
        levels=parsed,
        steps=steps,
        seed=seed,
        normalize=normalize,
        progress=progress,
        **options,
    )
    return _select_and_record(
        method,
        result,
        infos,
        budget_info,
        total,
        space,
        checkpoint=(
            None if checkpoint is None else file_fingerprint(checkpoint)
        ),
        config=config,
        seed=seed,
        full_set=full_set,
        exclude_modules=exclude_modules,
        value=value,
        granularity=granularity,
        out=out,
        top=top,
    )


def _select_and_record(
    method: str,
    result: ScoreResult,
    infos: Sequence[TensorInfo],
    budget_info: dict,
    total: int,
    space: DistortionSpace,
    *,
    checkpoint: Optional[dict],
    config: Optional[str],
    seed: Optional[int],
    full_set: bool,
    exclude_modules: Sequence[str],
    value: str,
    granularity: Optional[int],
    out: Optional[str],
    top: int,
    extra: Optional[dict] = None,
) -> dict:
    """Knapsack over scored candidates, then the record, written to
    ``out`` and logged."""
    excluded = () if full_set else exclude_modules
    outcome = select_tensors(
        infos,
        result.scores,
        budget_info['asked_bytes'],
        granularity=granularity,
        full_set=full_set,
        excluded_modules=excluded,
        value=value,
    )
    record = build_record(
        method=method,
        score_result=result,
        infos=infos,
        outcome=outcome,
        budget=budget_info,
        total_bytes=total,
        space=space,
        checkpoint=checkpoint,
        config=config,
        seed=seed,
        excluded_modules=excluded,
        value=value,
    )
    record.update(extra or {})
    if out is not None:
        save_selection(record, out)
    print_log(format_selection_table(record, top), logger='current')
    if out is not None:
        print_log(f'selection written to {out}', logger='current')
    return record


def reselect(
    path: str,
    *,
    budget: Optional[float] = None,
    budget_bytes: Optional[int] = None,
    granularity: Optional[int] = None,
    value: Optional[str] = None,
    space=None,
    checkpoint: Optional[str] = None,
    out: Optional[str] = None,
    top: int = 20,
) -> dict:
    """A selection at another budget from the scores a selection file
    already holds: the knapsack again, without scoring again.

    The new record keeps the source's method, scores, excluded modules,
    checkpoint, config and seed, solves the knapsack under the new budget
    (a ``bn`` / ``all`` full set too) and names its source in
    ``scores_from``.

    Args:
        path (str): the source selection file.
        budget (float, optional): budget as a fraction of the model bytes.
        budget_bytes (int, optional): budget in bytes (give one of the
            two).
        granularity (int, optional): knapsack unit in bytes.
        value (str, optional): a tensor's knapsack value (see
            :data:`KNAPSACK_VALUES`); the source's if None.
        space (dict | DistortionSpace, optional): check that the source
            was scored for this distortion space.
        checkpoint (str, optional): check that the source was scored on
            this base checkpoint (same sha256).
        out (str, optional): where to write the new selection file.
        top (int): tensors shown in the logged table.

    Returns:
        dict: the new selection record.
    """
    record = load_selection(path, space=space)
    if checkpoint is not None:
        scored_on = (record.get('checkpoint') or {}).get('sha256')
        if file_fingerprint(checkpoint)['sha256'] != scored_on:
            raise ValueError(
                f'{path} was scored on another base checkpoint '
                f'({(record.get("checkpoint") or {}).get("path")}), '
                f'not on {checkpoint}'
            )
    fields = ('score', 'raw_score', 'bytes', 'kind', 'is_bn')
    if not record['tensors'] or any(
        k not in t for t in record['tensors'] for k in fields
    ):
        raise ValueError(
            f'{path} does not hold every tensor with {list(fields)}: '
            'no scores to select from again'
        )
    value = value or record.get('knapsack_value', DEFAULT_KNAPSACK_VALUE)
    check_knapsack_value(value)
    total = int(record['model_total_bytes'])
    budget_info = resolve_budget(total, budget, budget_bytes)
    infos = [
        TensorInfo(
            name=t['name'],
            numel=int(t['numel']),
            bytes=int(t['bytes']),
            kind=t['kind'],
            is_bn=bool(t['is_bn']),
        )
        for t in record['tensors']
    ]
    exclude_modules = list(record.get('excluded_modules', []))
    check_fits(infos, exclude_modules, budget_info, total, granularity)
    normalize = record['normalisation']['mode']
    result = ScoreResult(
        method=record['method'],
        scores={t['name']: t['score'] for t in record['tensors']},
        raw_scores={t['name']: t['raw_score'] for t in record['tensors']},
        normalize=normalize,
        options=record.get('method_options', {}),
    )
    return _select_and_record(
        record['method'],
        result,
        infos,
        budget_info,
        total,
        build_space(record['distortion_space']),
        checkpoint=record.get('checkpoint'),
        config=record.get('config'),
        seed=record.get('seed'),
        full_set=False,
        exclude_modules=exclude_modules,
        value=value,
        granularity=granularity,
        out=out,
        top=top,
        extra=dict(
            scores_from=dict(
                path=os.path.abspath(path),
                sha256=file_fingerprint(path)['sha256'],
                budget=record['budget'],
            )
        ),
    )


def base_model_cfg(model_cfg):
    """The base segmentor's config: ``model.segmentor`` of a GearNN config
    (with the wrapper's data preprocessor), else ``model`` itself."""
    from mmengine.config import ConfigDict

    if model_cfg.get('type') != 'GearNNSegmentor':
        return model_cfg
    base = ConfigDict(copy.deepcopy(model_cfg['segmentor']))
    if model_cfg.get('data_preprocessor') is not None:
        base['data_preprocessor'] = copy.deepcopy(
            model_cfg['data_preprocessor']
        )
    return base


def run_selection_from_config(
    cfg,
    checkpoint: str,
    method: str,
    *,
    config_path: Optional[str] = None,
    dataloader: str = 'train_dataloader',
    device: str = 'cpu',
    **kwargs,
) -> dict:
    """:func:`run_selection` for an mmseg config and a base checkpoint.

    Builds ``cfg.model`` (SyncBN reverted to BN), loads the checkpoint
    strictly, reads the distortion space from ``cfg.distortion_space`` and
    the data from ``cfg[dataloader]`` with a distortion transform per
    level. The caller sets the default scope and imports
    ``custom_imports``.

    The selection is computed by one process: inside an initialised
    process group of several ranks the data loaders would be sharded and
    the scores would depend on the world size, so this raises there. For a
    launcher, run it on rank 0 with
    :func:`mmseg_gearnn.utils.run_on_main_process`, which hands the record
    to every rank (``tools/select_params.py --launcher pytorch`` does).

    Args:
        cfg (Config): the mmseg config.
        checkpoint (str): the base checkpoint.
        method (str): the scoring method.
        config_path (str, optional): the config's path, for the record.
        dataloader (str): the config key of the dataloader to score on.
        device (str): where to run the model.
        **kwargs: passed to :func:`run_selection`.

    Returns:
        dict: the selection record.
    """
    from mmengine.dist import get_world_size
    from mmengine.model import revert_sync_batchnorm
    from mmseg.registry import MODELS

    if get_world_size() > 1:
        raise RuntimeError(
            'run_selection_from_config runs in one process, not inside a '
            'process group of several ranks (its data would be sharded): '
            'use mmseg_gearnn.utils.run_on_main_process'
        )
    space = space_from_config(cfg)
    if method in DATA_METHODS and dataloader not in cfg:
        raise ValueError(
            f'method {method!r} needs data but the config has no '
            f'{dataloader!r}'
        )
    model = revert_sync_batchnorm(MODELS.build(base_model_cfg(cfg.model)))
    load_base_checkpoint(model, checkpoint)
    model.to(device)
    source = None
    if method in DATA_METHODS:
        source = DataloaderBatchSource(
            cfg[dataloader], space, seed=kwargs.get('seed', 0)
        )
    return run_selection(
        model,
        space,
        method,
        source=source,
        checkpoint=checkpoint,
        config=config_path,
        **kwargs,
    )
