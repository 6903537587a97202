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

from .corruption_intervals import interval
from .corruption_profile import CorruptionProfile
from .goals import CORRUPTION_GOALS

# The measures averaged over seeds.
SUMMARY_KEYS = ('P', 'mPC', 'rPC', 'mCE', 'held_out_mean')


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


def merge_seeds(entries: Dict[str, dict]):
    """``(methods, seeds)``: entries named ``{method}_seed{n}`` merged into
    ``method``'s (the mean over seeds of every number), and ``{method:
    {seed: {P, mPC, rPC, held_out_mean}}}`` of the methods run with more
    than one seed."""
    groups: Dict[str, Dict[int, dict]] = {}
    for name, entry in entries.items():
        method, _, seed = name.partition('_seed')
        groups.setdefault(method, {})[int(seed or 0)] = entry
    methods, seeds = {}, {}
    for method, runs in groups.items():
        if len(runs) == 1:
            methods[method] = next(iter(runs.values()))
            continue
        first = runs[min(runs)]
        merged = dict(first)
        for key in SUMMARY_KEYS:
            values = [r[key] for r in runs.values() if r[key] is not None]
            merged[key] = _round(
                sum(values) / len(values) if values else None,
                4 if key in ('rPC', 'mCE') else 2,
            )
        merged['per_corruption'] = {
            c: {
                s: _round(
                    sum(r['per_corruption'][c][s] for r in runs.values())
                    / len(runs)
                )
                for s in cells
            }
            for c, cells in first['per_corruption'].items()
        }
        methods[method] = merged
        seeds[method] = {
            str(seed): {k: r[k] for k in ('P', 'mPC', 'rPC', 'held_out_mean')}
            for seed, r in sorted(runs.items())
        }
    return methods, seeds


def evaluate_goals(results: dict, draws: Optional[dict] = None) -> list:
    """Each goal of :data:`~.goals.CORRUPTION_GOALS`: its value (margin
    over the others' best, or the measure), the bootstrap interval of that
    value over frames when ``draws`` are given (:func:`~.corruption_intervals
    .bootstrap`), met only when the interval's lower end reaches the
    target, else short by how much (of the value)."""
    methods = results['methods']
    out = []
    for goal in CORRUPTION_GOALS:
        value = methods.get(goal.method, {}).get(goal.measure)
        others = [methods.get(o, {}).get(goal.measure) for o in goal.others]
        entry = dict(goal=goal.name, method=goal.method, target=goal.offset)
        if value is None or any(o is None for o in others):
            out.append(dict(entry, value=None, met=None))
            continue
        margin = value - max(others) if others else value
        entry['value'] = round(margin, 4)
        entry['kind'] = 'margin' if others else 'value'
        if (
            draws is not None
            and goal.method in draws
            and all(o in draws for o in goal.others)
        ):
            values = draws[goal.method][goal.measure]
            if goal.others:
                import numpy as np

                values = values - np.max(
                    [draws[o][goal.measure] for o in goal.others], axis=0
                )
            entry['interval'] = list(interval(values))
        low = entry.get('interval', [margin])[0]
        met = low >= goal.offset - 1e-9
        entry.update(
            met=bool(met),
            met_by_value=bool(margin >= goal.offset - 1e-9),
            short_by=None if met else round(goal.offset - low, 4),
        )
        out.append(entry)
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
        f'{results.get("dirty")}; allow_dirty: '
        f'{results.get("allow_dirty")})  ',
        f'Wall time: {results["wall_time_s"]:.0f} s on '
        f'{results.get("machine", "?")}; stage time (every stage as it '
        f'ran, reused ones included): {results.get("stage_time_s", 0):.0f}'
        ' s  ',
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
    lines += [
        '',
        '## Goals',
        '',
        'Each as a margin over the compared methods (their best) or a '
        'value, with its 95% bootstrap interval over val frames (seeds '
        'averaged on each draw); met only when the lower end reaches the '
        'target, else short by the target minus the lower end.',
        '',
    ]
    for g in results.get('goals', []):
        if g['met'] is None:
            state = 'not measured'
        elif g['met']:
            state = 'met'
        else:
            state = f'short by {g["short_by"]:g}'
        span = g.get('interval')
        span = f' [{span[0]:.3f}, {span[1]:.3f}]' if span else ''
        what = 'margin' if g.get('kind') == 'margin' else 'value'
        lines.append(
            f'- {g.get("method", "gearnn")} {g["goal"]}: {what} '
            f'{_fmt(g["value"], 3)}{span} against {_fmt(g["target"], 3)}: '
            f'**{state}**'
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
    lines += _recipe_lines(results)
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


def _shares(cells: Dict[str, int], top: int = 4) -> str:
    total = sum(cells.values())
    ranked = sorted(cells.items(), key=lambda kv: -kv[1])[:top]
    return ', '.join(f'{g} {100 * n / total:.0f}%' for g, n in ranked)


def _recipe_lines(results: dict) -> list:
    """The recipe's routing (threshold, fallback, held-out with and
    without it), its seeds and the batches each gear trained on."""
    lines = []
    robust = results.get('recipe_robust_base')
    if robust:
        lines += [
            '',
            "## The recipe's robust base",
            '',
            f'{robust["robust"]}, teacher '
            f'{robust.get("teacher", "base")}, chosen on the tuning split ('
            f'{robust["rule"]}): '
            + ', '.join(
                f'{r} {c["tune_mean"]:.2f} (clean {c["tune_clean"]:.2f})'
                for r, c in robust['candidates'].items()
            )
            + '.',
        ]
    routing = results.get('routing')
    if routing:
        choice = routing['choice']
        no_fb = results.get('held_out_mean_no_fallback', {}).get('value')
        recipe = results['methods'].get('gearnn_recipe', {})
        chosen = choice['score'][f'{choice["threshold"]:g}']
        lines += [
            '',
            '## Confident routing of the recipe',
            '',
            f'Threshold {choice["threshold"]:g}, chosen by leave-one-'
            'corruption-out over the trained corruptions on the tuning '
            f'split ({choice["tune_frames"]} train_tune frames, never val): '
            'the mean over folds of the left-out corruption mIoU is '
            f'{chosen:.2f} at it, '
            f'{choice["score"]["0"]:.2f} without fallback (threshold 0) '
            f'and {choice["score"]["1"]:.2f} at threshold 1 (a gear only '
            'for an estimate of probability 1.0 in float32).',
            '',
            f'Held-out mean (val): {_fmt(recipe.get("held_out_mean"))} with '
            f'the fallback, {_fmt(no_fb)} without it; the fallback took '
            f'{100 * routing["fallback_share"]:.1f}% of the untrained and '
            'held-out frames to the robust base (no gear).',
            '',
            '| corruption | with fallback | without |',
            '| --- | --- | --- |',
        ]
        for corruption, cells in routing['routed'].items():
            without = routing['routed_no_fallback'].get(corruption, {})
            lines.append(
                f'| {corruption} | {_shares(cells)} | {_shares(without)} |'
            )
        lines += ['', 'Leave-one-corruption-out folds (tuning split):', '']
        lines += [
            '| left out | no fallback | all on base | chosen | median '
            'confidence | share p = 1.0 | routed to |',
            '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
        ]
        for corruption, fold in choice['folds'].items():
            lines.append(
                f'| {corruption} | {fold["no_fallback"]:.2f} | '
                f'{fold["all_base"]:.2f} | {fold["chosen"]:.2f} | '
                f'{fold["median_confidence"]:.3f} | '
                f'{fold.get("certain_share", float("nan")):.2f} | '
                f'{_shares(fold["routed"], 3)} |'
            )
    seeds = results.get('seeds')
    if seeds:
        lines += ['', '## Seeds', '', 'The table gives the mean over seeds.']
        lines += ['', '| method | seed | P | mPC | rPC | held-out |']
        lines += ['| --- | ---: | ---: | ---: | ---: | ---: |']
        for method, runs in seeds.items():
            for seed, e in runs.items():
                lines.append(
                    f'| {method} | {seed} | {_fmt(e["P"])} | '
                    f'{_fmt(e["mPC"])} | {_fmt(e["rPC"], 3)} | '
                    f'{_fmt(e["held_out_mean"])} |'
                )
    batches = results.get('per_gear_batches')
    if batches:
        lines += ['', '## Training batches', '']
        for name in ('gearnn_recipe', 'gearnn', 'bn_stats'):
            b = batches.get(name)
            if b:
                lines.append(
                    f'- {name}: {b["gears"]} gears, {b["iters"]} '
                    f'iterations: {b["per_gear"]:g} batches per gear'
                )
        single = batches.get('single_models', {})
        lines.append(
            f'- {", ".join(single.get("methods", []))}: one model, '
            f'{single.get("batches")} batches'
        )
        lines.append(f'- {batches.get("note", "")}')
    return lines


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


def run_choices(p: CorruptionProfile, cost: dict) -> dict:
    """The run's settings, stated in the results file."""
    s = p.stages
    slowest = max(cost['seconds'], key=cost['seconds'].get)
    return dict(
        val_frames=list(s.val_images) if s.val_images else 'all',
        resolution='240x320'
        if s.crop_size is None
        else 'x'.join(map(str, s.crop_size)),
        iters=s.iters,
        budget=s.budget,
        stability_alpha=p.alpha,
        train_frames='configs/_base_/datasets/camvid_splits/train_fit.txt',
        severities=list(p.severities),
        gear_mappings=list(p.gear_mappings),
        training_corruption=(
            'on the fly on each random crop; the slowest, '
            f'{slowest}, costs {cost["seconds"][slowest]} s a crop'
        ),
        untrained=list(p.untrained),
        eval_frames='corrupted once per (frame, corruption, severity, '
        'seed, library version), cached as PNG in the work dir',
        untrained_routing='gear models: the untrained and held-out '
        'corruptions routed by a distortion estimator trained on the '
        'trained corruptions, to the nearest trained gear',
        reference_for_mCE='clean',
    )
