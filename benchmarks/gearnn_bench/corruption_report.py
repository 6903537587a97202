"""The CamVid-C results: method entries, goals and ``camvid_c.{json,md,png}``.

The JSON holds ``command, commit, wall_time_s, split, corruptions,
held_out`` and ``methods: {name: {P, mPC, rPC, mCE, memory_ratio,
per_corruption: {corruption: {severity: mIoU}}, held_out_mean}}`` (P, mPC
and mCE as :mod:`mmseg_gearnn.evaluation.robustness` defines them, mCE
against the clean model), then the run's settings and the goals.
"""

import json
import math
import os
import os.path as osp
from typing import Dict, Optional

from mmseg_gearnn.distortions import CORRUPTION_GROUPS
from mmseg_gearnn.evaluation import (
    corruption_table,
    mean_over,
    plot_miou_vs_level,
    robustness_summary,
)
from mmseg_gearnn.utils import atomic_write

from .corruption_profile import CorruptionProfile

# (name, method, measure, at least, comparison method or None, offset):
# the measure of ``method`` is at least that of the comparison plus
# ``offset`` (or at least ``offset`` without one).
GOALS = (
    ('mPC >= clean + 12', 'gearnn', 'mPC', 'clean', 12.0),
    ('mPC >= stability + 4', 'gearnn', 'mPC', 'stability', 4.0),
    ('rPC >= 0.90', 'gearnn', 'rPC', None, 0.90),
    ('held-out >= clean', 'gearnn', 'held_out_mean', 'clean', 0.0),
    ('held-out >= tent - 2', 'gearnn', 'held_out_mean', 'tent', -2.0),
)


def _round(value, digits=2):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def method_entry(
    entry: dict,
    held: Optional[dict],
    reference_levels: dict,
    profile: CorruptionProfile,
) -> dict:
    """One method's results entry from its stage result(s).

    Args:
        entry (dict): the stage result (``clean_miou``, ``levels``,
            ``memory_ratio``).
        held (dict, optional): a gear model's stage result on the
            untrained corruptions, whose levels are added to ``entry``'s.
        reference_levels (dict): the clean model's levels, for mCE.
        profile (CorruptionProfile): the corruptions reported.
    """
    levels = dict(entry['levels'])
    if held is not None:
        levels.update(held['levels'])
    benchmark = corruption_table(levels)
    held_table = {c: benchmark.pop(c) for c in profile.held_out}
    reference = {
        k: v
        for k, v in corruption_table(reference_levels).items()
        if k in profile.corruptions
    }
    summary = robustness_summary(
        entry['clean_miou'],
        {'ic_' + c: cells for c, cells in benchmark.items()},
        {'ic_' + c: cells for c, cells in reference.items()},
    )
    table = dict(benchmark, **held_table)
    return dict(
        P=_round(summary['P']),
        mPC=_round(summary['mPC']),
        rPC=_round(summary['rPC'], 4),
        mCE=_round(summary['mCE'], 4),
        memory_ratio=_round(entry['memory_ratio'], 5),
        per_corruption={
            c: {str(s): _round(m) for s, m in sorted(cells.items())}
            for c, cells in table.items()
        },
        held_out_mean=_round(mean_over(held_table, profile.held_out)),
    )


def evaluate_goals(results: dict) -> list:
    """Each goal: met, or short by how much."""
    methods = results['methods']
    out = []
    for name, method, measure, other, offset in GOALS:
        value = methods.get(method, {}).get(measure)
        target = offset
        if other is not None:
            base = methods.get(other, {}).get(measure)
            target = None if base is None else base + offset
        if value is None or target is None:
            out.append(dict(goal=name, value=value, target=target, met=None))
            continue
        met = value >= target - 1e-9
        out.append(
            dict(
                goal=name,
                value=value,
                target=round(target, 4),
                met=met,
                short_by=None if met else round(target - value, 4),
            )
        )
    return out


def _fmt(value, digits=2) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def group_curves(results: dict) -> Dict[str, Dict[str, Dict[str, float]]]:
    """``{method: {group: {severity: mean mIoU}}}`` over each group's
    corruptions (the held-out ones as ``held_out``), for the plot."""
    groups = {
        g: [c for c in members if c in results['corruptions']]
        for g, members in CORRUPTION_GROUPS.items()
    }
    groups['held_out'] = list(results['held_out'])
    curves = {}
    for name, entry in results['methods'].items():
        per = entry['per_corruption']
        curves[name] = {}
        for group, members in groups.items():
            cells: Dict[str, list] = {}
            for c in members:
                for s, m in per.get(c, {}).items():
                    if m is not None:
                        cells.setdefault(s, []).append(m)
            if cells:
                curves[name][group] = {
                    s: sum(v) / len(v) for s, v in sorted(cells.items())
                }
    return curves


def markdown(results: dict) -> str:
    """The results as markdown: the summary table, per corruption, the
    goals, the gear mappings' memory and the run's settings."""
    methods = results['methods']
    lines = [
        '# CamVid-C: the standard corruptions on CamVid',
        '',
        f'Command: `{results["command"]}`  ',
        f'Commit: `{results["commit"]}` (uncommitted changes: '
        f'{results.get("dirty")})  ',
        f'Wall time: {results["wall_time_s"]:.0f} s on '
        f'{results.get("machine", "?")}  ',
        f'Split: {results["split"]}; profile: {results.get("profile")}; '
        f'{results.get("library", "")}',
        '',
        'P: clean mIoU; mPC: mean mIoU over the '
        f'{len(results["corruptions"])} benchmark corruptions x severities; '
        'rPC = mPC / P; mCE: mean corruption error against the clean model '
        '(lower is better); held-out: mean mIoU over the '
        f'{len(results["held_out"])} held-out corruptions x severities; '
        "memory: model bytes over the base's. No method trains on the "
        'held-out corruptions nor on '
        f'{", ".join(results["choices"]["untrained"]) or "-"}; gear models '
        'route these by the distortion estimator, the others by their '
        'metadata.',
        '',
        '| method | P | mPC | rPC | mCE | held-out | memory |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ]
    for name, e in methods.items():
        lines.append(
            f'| {name} | {_fmt(e["P"])} | {_fmt(e["mPC"])} | '
            f'{_fmt(e["rPC"], 3)} | {_fmt(e["mCE"], 3)} | '
            f'{_fmt(e["held_out_mean"])} | {_fmt(e["memory_ratio"], 4)} |'
        )
    corruptions = results['corruptions'] + results['held_out']
    lines += [
        '',
        '## mIoU per corruption (mean over severities)',
        '',
        '| method | ' + ' | '.join(corruptions) + ' |',
        '| --- |' + ' ---: |' * len(corruptions),
    ]
    for name, e in methods.items():
        cells = []
        for c in corruptions:
            values = [
                v
                for v in e['per_corruption'].get(c, {}).values()
                if v is not None
            ]
            cells.append(_fmt(sum(values) / len(values) if values else None))
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines += ['', '## Goals', '']
    for g in results.get('goals', []):
        if g['met'] is None:
            state = 'not measured'
        elif g['met']:
            state = 'met'
        else:
            state = f'short by {g["short_by"]:g}'
        lines.append(
            f'- gearnn {g["goal"]}: {_fmt(g["value"], 3)} against '
            f'{_fmt(g["target"], 3)}: **{state}**'
        )
    routing = results.get('estimator_routing')
    if routing:
        lines += [
            '',
            '## Where the estimator routes each corruption',
            '',
            'Share of val frames (all severities) sent to each gear; on '
            'the trained corruptions it picks their own gear for '
            f'{100 * routing["trained_accuracy"]:.1f}% of the frames.',
            '',
        ]
        for corruption, cells in routing['routed'].items():
            total = sum(cells.values())
            top = sorted(cells.items(), key=lambda kv: -kv[1])[:3]
            shares = ', '.join(f'{g} {100 * n / total:.0f}%' for g, n in top)
            lines.append(f'- {corruption}: {shares}')
    lines += ['', '## Gear mappings', '']
    for mapping, m in results.get('gear_mappings', {}).items():
        trained = m['method'] or 'not trained (memory from the same gears)'
        lines.append(
            f'- {mapping}: {m["gears"]} gears, memory ratio '
            f'{m["memory_ratio"]:.4f} ({trained})'
        )
    lines += ['', '## Settings', '']
    for key, value in results.get('choices', {}).items():
        lines.append(f'- {key}: {value}')
    return '\n'.join(lines) + '\n'


def write_results(results: dict, out_dir: str, stem: str) -> Dict[str, str]:
    """``{stem}.json``, ``{stem}.md`` and ``{stem}.png`` (mIoU against
    severity per corruption group, one line per method, clean dashed)."""
    os.makedirs(out_dir, exist_ok=True)
    base = osp.join(out_dir, stem)
    clean = {n: e['P'] for n, e in results['methods'].items()}
    return dict(
        json=atomic_write(base + '.json', json.dumps(results, indent=2)),
        md=atomic_write(base + '.md', markdown(results)),
        png=plot_miou_vs_level(
            group_curves(results), base + '.png', clean=clean
        ),
    )
