"""How severe each (type, level) of a distortion space is: what
``compound_routing='dominant'`` compares across distortion types."""

import json
import math
import os
from typing import Dict, List, Optional, Union

from ...distortions import DistortionSpace


def gear_severity(
    space: DistortionSpace, severity: Optional[Union[str, dict]] = None
) -> List[float]:
    """The severity of every gear of ``space`` (0 for clean).

    Args:
        space (DistortionSpace): the gear table.
        severity (str | dict, optional): None for the rank of each level
            within its type, ``(i + 1) / n`` for the i-th of n levels listed
            mild to harsh; the path of a ``DistortionIoUMetric`` report of
            the clean model for its measured drop (clean mIoU minus the
            level's mIoU); or ``{type: {level: severity}}``.

    Returns:
        list[float]: one value per gear id.
    """
    if severity is None:
        table = {
            t: {
                lv: (i + 1) / len(space.levels(t))
                for i, lv in enumerate(space.levels(t))
            }
            for t in space.types
        }
    elif isinstance(severity, str):
        table = _severity_from_report(severity)
    elif isinstance(severity, dict):
        table = severity
    else:
        raise TypeError(
            'compound_severity must be None, a report path or a dict, '
            f'got {type(severity).__name__}'
        )
    out = [0.0] * space.num_gears
    for gear, dtype, level in space.gears()[1:]:
        value = None
        for listed, v in (table.get(dtype) or {}).items():
            if math.isclose(float(listed), float(level), rel_tol=1e-6):
                value = v
                break
        if value is None:
            raise ValueError(
                f'compound_severity has no value for ({dtype}, {level}): '
                'give one for every (type, level) of the space'
            )
        out[gear] = float(value)
    return out


def severity_of(
    space: DistortionSpace, severity: List[float], distortion_type: str, level
) -> float:
    """The severity of (type, level) from per-gear ``severity``; a level
    between two gears gets the linear blend of theirs."""
    return sum(
        w * severity[g]
        for g, w in space.bracketing_gears(distortion_type, level)
    )


def _severity_from_report(path: str) -> Dict[str, Dict[str, float]]:
    """``{type: {level: drop}}`` from a ``DistortionIoUMetric`` report: the
    clean mIoU minus the mIoU at each level."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'compound_severity report not found: {path} (a '
            'DistortionIoUMetric output_file of the clean model)'
        )
    with open(path, encoding='utf-8') as f:
        report = json.load(f)
    clean = report.get('clean')
    if clean is None or not isinstance(report.get('levels'), dict):
        raise ValueError(
            f'{path} is not a DistortionIoUMetric report with a clean mIoU'
        )
    return {
        dtype: {
            level: clean - miou
            for level, miou in levels.items()
            if miou is not None
        }
        for dtype, levels in report['levels'].items()
    }
