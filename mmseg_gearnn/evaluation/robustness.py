"""Corruption robustness metrics of the literature, from level tables.

A level table maps a corruption (``'gaussian_noise'``) to its mIoU in percent
at each severity (``{1: 41.2, 2: 30.5, ...}``); :func:`corruption_table`
reads one from the ``levels`` of a :class:`DistortionIoUMetric` report,
whose types are ``'ic_' + corruption``. With ``m[c][s]`` the mIoU under
corruption ``c`` at severity ``s`` and ``clean`` the clean mIoU:

- ``P = clean`` (performance on clean data);
- ``mPC = mean over the 15 benchmark corruptions c and severities s of
  m[c][s]`` (mean performance under corruption; Michaelis et al.);
- ``rPC = mPC / P`` (relative performance under corruption);
- per corruption, the mean of ``m[c][s]`` over severities; per group
  (noise, blur, weather, digital, and the 4 held-out corruptions), the
  mean over the group's corruptions and severities;
- ``CE_c = sum_s (100 - m[c][s]) / sum_s (100 - ref[c][s])`` against a
  reference model's table ``ref`` (the corruption error of Hendrycks &
  Dietterich with error ``1 - mIoU``), and ``mCE`` the mean of ``CE_c``
  over the benchmark corruptions: 1.0 is as robust as the reference, lower
  is better.

Cells that are None (a group with no valid class) are left out of every
mean. ``mPC``, ``CE`` and the group means cover the corruptions the table
holds; a table missing some benchmark corruption gives a partial mPC.
"""

import math
from typing import Dict, Iterable, Optional

from ..distortions import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTION_GROUPS,
    HELD_OUT_CORRUPTIONS,
    corruption_of,
)

# corruption -> severity -> mIoU in percent (None: not measurable).
LevelTable = Dict[str, Dict[int, Optional[float]]]


def corruption_table(levels: Dict[str, Dict]) -> LevelTable:
    """The corruptions of a report's ``levels`` (``{type: {level: mIoU}}``,
    levels as strings or numbers), keyed by corruption and integer
    severity; types that are no corruption are left out."""
    table: LevelTable = {}
    for dtype, cells in levels.items():
        corruption = corruption_of(dtype)
        if corruption is None:
            continue
        table[corruption] = {
            int(float(level)): miou for level, miou in cells.items()
        }
    return table


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def mean_over(
    table: LevelTable, corruptions: Iterable[str]
) -> Optional[float]:
    """The mean mIoU over every severity of the given corruptions that the
    table holds (None if it holds none)."""
    return _mean(
        miou
        for corruption in corruptions
        for miou in table.get(corruption, {}).values()
    )


def mean_per_corruption(table: LevelTable) -> Dict[str, Optional[float]]:
    """Each corruption's mIoU averaged over its severities."""
    return {c: _mean(cells.values()) for c, cells in table.items()}


def mean_per_group(table: LevelTable) -> Dict[str, Optional[float]]:
    """The mean mIoU over each group's corruptions and severities, for the
    groups the table holds: noise, blur, weather, digital and
    ``held_out``."""
    groups = dict(CORRUPTION_GROUPS, held_out=HELD_OUT_CORRUPTIONS)
    return {
        group: mean_over(table, members)
        for group, members in groups.items()
        if any(c in table for c in members)
    }


def mpc(table: LevelTable) -> Optional[float]:
    """Mean performance under corruption: the mean mIoU over the benchmark
    corruptions and their severities."""
    return mean_over(table, BENCHMARK_CORRUPTIONS)


def rpc(mpc_value: Optional[float], clean: Optional[float]) -> Optional[float]:
    """Relative performance under corruption, ``mPC / P`` (None where
    either is missing or P is 0)."""
    if mpc_value is None or not clean:
        return None
    return mpc_value / clean


def corruption_errors(
    table: LevelTable, reference: LevelTable
) -> Dict[str, Optional[float]]:
    """``CE_c = sum_s (100 - m[c][s]) / sum_s (100 - ref[c][s])`` for each
    corruption of ``table``, over the severities it holds (the reference
    must hold them too). None where a cell is None or the reference makes
    no error."""
    errors = {}
    for corruption, cells in table.items():
        ref_cells = reference.get(corruption)
        if ref_cells is None or not set(cells) <= set(ref_cells):
            raise ValueError(
                f'the reference lacks {corruption!r} at severities '
                f'{sorted(cells)}: it has '
                f'{sorted(ref_cells) if ref_cells else "none"}'
            )
        pairs = [(cells[s], ref_cells[s]) for s in cells]
        if any(m is None or r is None for m, r in pairs):
            errors[corruption] = None
            continue
        ref_error = sum(100 - r for _, r in pairs)
        errors[corruption] = (
            sum(100 - m for m, _ in pairs) / ref_error if ref_error else None
        )
    return errors


def mce(table: LevelTable, reference: LevelTable) -> Optional[float]:
    """Mean corruption error: the mean of ``CE_c`` over the benchmark
    corruptions that ``table`` holds."""
    errors = corruption_errors(table, reference)
    return _mean(errors.get(c) for c in BENCHMARK_CORRUPTIONS)


def robustness_summary(
    clean: Optional[float],
    levels: Dict[str, Dict],
    reference_levels: Optional[Dict[str, Dict]] = None,
) -> dict:
    """Every metric of the module from a report's clean mIoU and levels.

    Args:
        clean (float, optional): the clean mIoU in percent (``P``).
        levels (dict): ``{type: {level: mIoU}}``, as in a
            :class:`DistortionIoUMetric` report.
        reference_levels (dict, optional): the reference model's levels,
            for ``CE`` and ``mCE``.

    Returns:
        dict: ``P``, ``mPC``, ``rPC``, ``per_corruption`` (mean over
        severities), ``per_group`` and, with a reference, ``CE`` (per
        corruption) and ``mCE``; None for what cannot be computed.
    """
    table = corruption_table(levels)
    mpc_value = mpc(table)
    summary = dict(
        P=clean,
        mPC=mpc_value,
        rPC=rpc(mpc_value, clean),
        per_corruption=mean_per_corruption(table),
        per_group=mean_per_group(table),
    )
    if reference_levels is not None:
        reference = corruption_table(reference_levels)
        summary['CE'] = corruption_errors(table, reference)
        summary['mCE'] = mce(table, reference)
    return summary
