"""Budgeted adaptor selection, end to end.

:func:`run_selection` (a model in hand) and :func:`reselect` (scores from
a selection file, another budget) both follow one flow::

    budget.resolve_budget, budget.check_fits   fail before any scoring
    scores.compute_scores                      (run_selection only)
      or record.recorded_scores                (reselect only)
    solver.select_tensors                      the knapsack
    record.build_record, record.save_selection the selection file

:func:`~.config.run_selection_from_config` builds the model and the data
from an mmseg config and calls :func:`run_selection`.
"""

import os
from typing import Optional, Sequence

import torch.nn as nn
from mmengine.logging import print_log

from ..distortions import DistortionSpace, build_space
from ..models.gear_file import base_sha256
from ..models.selection_file import load_selection
from .base_weights import file_fingerprint
from .budget import check_fits, resolve_budget
from .candidates import (
    TensorInfo,
    list_candidates,
    model_total_bytes,
    training_only_modules,
)
from .data import BatchSource, parse_levels
from .record import (
    build_record,
    check_scored_on,
    format_selection_table,
    recorded_scores,
    save_selection,
)
from .scores import (
    DEFAULT_NORMALIZE,
    ScoreResult,
    compute_scores,
    get_scorer,
    seed_everything,
)
from .solver import (
    DEFAULT_KNAPSACK_VALUE,
    check_knapsack_value,
    select_tensors,
)


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
        method (str): a scoring method (see :mod:`.scorers`).
        budget (float, optional): budget as a fraction of the model bytes.
        budget_bytes (int, optional): budget in bytes (give one of the
            two).
        source (BatchSource, optional): distorted batches (methods that
            need data).
        levels (Sequence, optional): level subset (see
            :func:`~.data.parse_levels`); every distorted gear if None.
        steps (int): steps / batches per level (methods that need data).
        seed (int): seeds everything.
        normalize (str): score normalisation (see :mod:`.scores`).
        granularity (int, optional): knapsack unit in bytes.
        respect_budget (bool): make a full-set method (``bn`` / ``all``)
            solve the knapsack instead of selecting its whole set.
        exclude_modules (Sequence[str], optional): modules (by name) whose
            tensors are scored but never selected. None: the modules that
            only feed the training loss
            (:func:`~.candidates.training_only_modules`, e.g.
            ``auxiliary_head``); ``()`` excludes nothing.
        value (str): a tensor's knapsack value (see
            :data:`~.solver.KNAPSACK_VALUES`).
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
    scorer = get_scorer(method)
    full_set = scorer.full_set and not respect_budget
    if not full_set:
        # Fail before the (costly) scoring.
        check_fits(infos, exclude_modules, budget_info, total, granularity)
    parsed = parse_levels(space, levels) if scorer.needs_data else None
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
        base_sha256=base_sha256(model),
        config=config,
        seed=seed,
        full_set=full_set,
        exclude_modules=exclude_modules,
        value=value,
        granularity=granularity,
        out=out,
        top=top,
    )


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
            :data:`~.solver.KNAPSACK_VALUES`); the source's if None.
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
        check_scored_on(record, path, checkpoint)
    infos, result = recorded_scores(record, path)
    value = value or record.get('knapsack_value', DEFAULT_KNAPSACK_VALUE)
    check_knapsack_value(value)
    total = int(record['model_total_bytes'])
    budget_info = resolve_budget(total, budget, budget_bytes)
    exclude_modules = list(record.get('excluded_modules', []))
    check_fits(infos, exclude_modules, budget_info, total, granularity)
    return _select_and_record(
        record['method'],
        result,
        infos,
        budget_info,
        total,
        build_space(record['distortion_space']),
        checkpoint=record.get('checkpoint'),
        base_sha256=record.get('base_sha256'),
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


def _select_and_record(
    method: str,
    result: ScoreResult,
    infos: Sequence[TensorInfo],
    budget_info: dict,
    total: int,
    space: DistortionSpace,
    *,
    checkpoint: Optional[dict],
    base_sha256: Optional[str],
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
        base_sha256=base_sha256,
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
