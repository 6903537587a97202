"""The selection file: the one place that writes it.

The selection file (JSON, ``format_version`` 1) records which tensors form
the adaptor, and everything needed to judge and reproduce it: the scores of
every candidate, the budget asked and used, the knapsack granularity,
value (:data:`~.solver.KNAPSACK_VALUES`) and greedy comparison, the model
size, the distortion space, the base checkpoint's fingerprint, the sha256
of the base weights scored (``base_sha256``, see
:func:`~mmseg_gearnn.models.gear_file.base_sha256`), the config and the
seed. Reading it back, :func:`load_selection` (which checks the format
version and, when given them, the model and the distortion space the file
must match), is :mod:`mmseg_gearnn.models.selection_file`: a model reads
the file it is given as its adaptor.
"""

import json
from typing import List, Optional, Sequence, Tuple

from ..distortions import DistortionSpace
from ..models.adaptor_tensors import adaptor_size_text
from ..models.selection_file import FORMAT_VERSION
from ..utils.io import atomic_write
from .base_weights import file_fingerprint
from .candidates import TensorInfo, in_modules
from .knapsack import KnapsackResult
from .scores import NORMALIZATION_DOCS, SCORERS, ScoreResult
from .solver import DEFAULT_KNAPSACK_VALUE, SelectionOutcome, adaptor_bytes

#: What each tensor entry must hold to be selected from again.
SCORED_TENSOR_KEYS = ('score', 'raw_score', 'bytes', 'kind', 'is_bn')


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
    base_sha256: Optional[str] = None,
) -> dict:
    """The selection file's content (see :data:`FORMAT_VERSION`);
    ``base_sha256`` is the hash of the base weights that were scored."""
    chosen = set(outcome.selected)
    used = adaptor_bytes(infos, outcome.selected)
    names = [t.name for t in infos]

    def names_of(result: KnapsackResult) -> List[str]:
        return [names[i] for i in result.indices]

    dp_names, greedy_names = names_of(outcome.dp), names_of(outcome.greedy)
    scorer = SCORERS.get(method)
    return dict(
        format_version=FORMAT_VERSION,
        method=method,
        method_description=scorer.description if scorer else '',
        method_options=score_result.options,
        normalisation=dict(
            mode=score_result.normalize,
            description=NORMALIZATION_DOCS[score_result.normalize],
        ),
        seed=seed,
        config=None if config is None else str(config),
        checkpoint=checkpoint,
        base_sha256=base_sha256,
        distortion_space=space.to_dict(),
        model_total_bytes=int(total_bytes),
        budget=dict(
            asked_fraction=budget['asked_fraction'],
            asked_bytes=budget['asked_bytes'],
            used_bytes=used,
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


def check_scored_on(record: dict, path: str, checkpoint: str) -> None:
    """Raise unless the selection file ``path`` (read as ``record``) was
    scored on the base checkpoint ``checkpoint`` (same sha256)."""
    scored_on = record.get('checkpoint') or {}
    if file_fingerprint(checkpoint)['sha256'] != scored_on.get('sha256'):
        raise ValueError(
            f'{path} was scored on another base checkpoint '
            f'({scored_on.get("path")}), not on {checkpoint}'
        )


def recorded_scores(
    record: dict, path: str
) -> Tuple[List[TensorInfo], ScoreResult]:
    """The candidates and scores a selection file holds, to select from
    again without scoring.

    Raises:
        ValueError: if a tensor entry lacks one of
            :data:`SCORED_TENSOR_KEYS`, or there is none.
    """
    tensors = record['tensors']
    if not tensors or any(
        k not in t for t in tensors for k in SCORED_TENSOR_KEYS
    ):
        raise ValueError(
            f'{path} does not hold every tensor with '
            f'{list(SCORED_TENSOR_KEYS)}: no scores to select from again'
        )
    infos = [
        TensorInfo(
            name=t['name'],
            numel=int(t['numel']),
            bytes=int(t['bytes']),
            kind=t['kind'],
            is_bn=bool(t['is_bn']),
        )
        for t in tensors
    ]
    result = ScoreResult(
        method=record['method'],
        scores={t['name']: t['score'] for t in tensors},
        raw_scores={t['name']: t['raw_score'] for t in tensors},
        normalize=record['normalisation']['mode'],
        options=record.get('method_options', {}),
    )
    return infos, result


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
        f'{adaptor_size_text(record["selected"])}, of '
        f'{record["num_candidates"]} candidate tensors: '
        f'{b["used_bytes"]:,} bytes used of '
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
