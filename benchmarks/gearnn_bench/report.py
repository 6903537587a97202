"""The results files: JSON, markdown and plot, and the JSON's schema."""

import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmseg_gearnn.evaluation import markdown_table, plot_miou_vs_level
from mmseg_gearnn.utils import atomic_write

from .methods import REQUIRED_METHODS


def _num(value, digits=2) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def stage_lines(stages: Dict[str, dict]) -> List[str]:
    """Which stages a run reused, and every stage's own time summed: what
    the same run would take from nothing (less a reused base, whose time
    is not recorded)."""
    if not stages:
        return []
    reused = [name for name, s in stages.items() if s['reused']]
    timed = [s['time_s'] for s in stages.values() if s['time_s'] is not None]
    untimed = [name for name, s in stages.items() if s['time_s'] is None]
    total = f'{sum(timed) / 60:.1f} min'
    if untimed:
        total += f' (without {", ".join(untimed)}: given or reused)'
    return [
        '- stages reused from earlier runs: '
        + (', '.join(f'`{n}`' for n in reused) if reused else 'none'),
        f"- every stage's own time summed: {total}",
    ]


def _spread(entry: dict) -> str:
    seeds = entry.get('seeds') or []
    if len(seeds) < 2:
        return '-'
    return f'± {entry["mean_miou_std"]:.2f} ({len(seeds)} seeds)'


def _interval(goal: dict) -> str:
    bounds = goal.get('interval')
    if bounds is None:
        return '-'
    return f'[{bounds[0]:.4g}, {bounds[1]:.4g}]'


def interval_lines(about: Optional[dict]) -> List[str]:
    """What the goals' intervals are, and the methods without one."""
    if not about:
        return []
    lines = [
        f'A goal between two methods is met only when its '
        f'{about["level"]:.0%} bootstrap interval over {about["over"]} '
        f'({about["draws"]} draws, {about["frames"]} frames) lies on the '
        "target's side: its lower end reaches the target (for `<=`, its "
        "upper end); short by how far that end is. `seeds` is the seeds' "
        'noise (twice the larger spread over seeds), for reading only.',
        '',
    ]
    if about.get('without_frame_areas'):
        lines[-1:] = [
            '',
            '- no interval (evaluations without frame areas): '
            + ', '.join(f'`{m}`' for m in about['without_frame_areas'])
            + '; their goals are judged on the value',
            '',
        ]
    return lines


def _noise(goal: dict) -> str:
    if goal.get('within_noise') is None:
        return '-' if 'within_noise' not in goal else 'one seed'
    return 'within noise' if goal['within_noise'] else 'outside noise'


def _scope_lines(settings: dict) -> List[str]:
    """What a narrowed run left out, said plainly."""
    lines = []
    if settings.get('methods'):
        lines.append(
            '- only these methods ran: '
            + ', '.join(f'`{m}`' for m in settings['methods'])
        )
    if settings.get('tune_only'):
        lines.append(
            '- tuning only: every point scored on the tuning split; nothing '
            'evaluated on val, no other seed run'
        )
    if settings.get('tune_points'):
        lines.append(
            f'- at most {settings["tune_points"]} value(s) of each grid '
            'option tried (the first: its config default)'
        )
    return lines


def tuning_lines(tuning: Optional[dict], candidates: dict) -> List[str]:
    """The tuning split, every method's grid with its tuning-split means
    and chosen point, and the recipe candidates."""
    if not tuning:
        return []
    split = tuning['split']
    lines = [
        '',
        '## Tuning (on the tuning split, never on val)',
        '',
        f'- split: {split["rule"]}; {split["fit_frames"]} frames fit '
        f'(`{split["fit_file"]}`), {split["tune_frames"]} tune '
        f'(`{split["tune_file"]}`: '
        + ', '.join(
            f'{k} {v}' for k, v in split['tune_frames_per_sequence'].items()
        )
        + ')',
        '',
        '| method | grid | mean on the tuning split per point | chosen |',
        '| --- | --- | --- | --- |',
    ]
    for name, t in tuning['methods'].items():
        grid = '; '.join(f'`{k}` {v}' for k, v in t['grid'].items())
        scores = ', '.join(
            f'{k}: {_num(v)}' for k, v in t['tune_mean_miou'].items()
        )
        chosen = ', '.join(f'{k}={v}' for k, v in t['chosen'].items())
        lines.append(f'| {name} | {grid} | {scores} | {chosen} |')
    if candidates:
        lines += [
            '',
            '## Gear recipe candidates (best mean on the tuning split)',
            '',
            '| candidate | tuning split mean | chosen |',
            '| --- | ---: | --- |',
        ]
        for name, c in candidates['table'].items():
            chosen = ', '.join(f'{k}={v}' for k, v in c['chosen'].items())
            mark = ' (best)' if name == candidates['winner'] else ''
            if name == candidates.get('shipped'):
                mark += ' (shipped as gearnn_recipe)'
            lines.append(
                f'| {name}{mark} | {_num(c["tune_mean_miou"])} | {chosen} |'
            )
    return lines


def _dirty_lines(results: dict) -> List[str]:
    """Whether the run's tree had uncommitted changes (results written
    before this was recorded say nothing)."""
    if results.get('dirty') is None:
        return []
    allowed = (
        ', written with --allow-dirty' if results.get('allow_dirty') else ''
    )
    return [f'- uncommitted changes: {results["dirty"]}{allowed}']


def per_level_heading(methods: dict) -> List[str]:
    """The per-level table's heading: its rows are seed 0, which for a
    method run with several seeds differs from the mean over seeds of the
    table above."""
    seeded = [k for k, e in methods.items() if len(e.get('seeds') or []) > 1]
    if not seeded:
        return ['', '## mIoU per distortion level', '']
    return [
        '',
        '## mIoU per distortion level (seed 0)',
        '',
        'Every row is seed 0. For the methods run with several seeds ('
        + ', '.join(seeded)
        + '), `mean` here is seed 0 over the levels, not the mean over '
        'seeds of the table above.',
        '',
    ]


def results_markdown(results: dict, png: Optional[str] = None) -> str:
    """The results file in markdown: provenance, the method table (mean
    over seeds and spread, evaluation time per frame), the per-level table
    (seed 0, said so where a method ran several seeds), the budget curve,
    the tuning and the goals."""
    m = results['methods']
    lines = [
        '# Robustness benchmark on CamVid',
        '',
        f'- command: `{results["command"]}`',
        f'- commit: `{results["commit"]}`',
        *_dirty_lines(results),
        f'- machine: {results["machine"]}',
        f'- wall time: {results["wall_time_s"] / 60:.1f} min '
        f'(profile `{results["profile"]}`)',
        *stage_lines(results.get('stages', {})),
        f'- data: `{results["data_root"]}`, split `{results["split"]}`',
        f'- base checkpoint: `{results["base_checkpoint"]}`',
        *_scope_lines(results.get('settings', {})),
        '',
        'mIoU in percent; `mean` averages every (type, level) of the '
        'distortion space; `adaptor` is one gear over the model '
        '(parameter and buffer bytes); `memory` is everything the method '
        'holds over the base; `mean` is the mean over seeds, `spread` '
        "their standard deviation; `s/frame` is the evaluation's wall time "
        'per frame in this run (test-time adaptation included).',
        '',
    ]
    if m:
        lines += [
            '| method | mean | spread | clean | adaptor | memory | s/frame |',
            '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
        ]
    for name, e in m.items():
        lines.append(
            f'| {name} | {_num(e["mean_miou"])} | {_spread(e)} '
            f'| {_num(e["clean_miou"])} '
            f'| {e["adaptor_fraction"]:.4%} | {e["memory_ratio"]:.4f} '
            f'| {_num(e.get("eval_s_per_frame"), 3)} |'
        )
    if m:
        lines += per_level_heading(m)
        lines.append(
            markdown_table(
                {k: e['levels'] for k, e in m.items()},
                clean={k: e['clean_miou'] for k, e in m.items()},
            )
        )
    if png:
        lines += ['', f'![mIoU against level]({png})']
    budgets = sorted(
        {b for c in results['budget_curve'].values() for b in c},
        key=float,
    )
    if budgets:
        lines += [
            '',
            '## Budget curve (mean mIoU over all levels)',
            '',
        ]
        lines.append(
            '| selection | '
            + ' | '.join(f'{float(b):.2%}' for b in budgets)
            + ' |'
        )
        lines.append('| --- |' + ' ---: |' * len(budgets))
        for scoring, points in results['budget_curve'].items():
            cells = [
                _num(points[b]['mean_miou']) if b in points else '-'
                for b in budgets
            ]
            lines.append(f'| {scoring} | ' + ' | '.join(cells) + ' |')
    lines += tuning_lines(results.get('tuning'), results.get('candidates'))
    lines += [
        '',
        '## Goals',
        '',
        *interval_lines(results.get('intervals')),
    ]
    # Results from before the intervals keep their table as written.
    with_intervals = 'intervals' in results or any(
        'interval' in g for g in results['goals']
    )
    interval_head = ' 95% interval |' if with_intervals else ''
    lines += [
        f'| goal | measured |{interval_head} target | met | short by '
        '| seeds |',
        '| --- | ---: |'
        + (' --- |' if with_intervals else '')
        + ' ---: | --- | ---: | --- |',
    ]
    for g in results['goals']:
        interval = f' {_interval(g)} |' if with_intervals else ''
        lines.append(
            f'| {g["goal"]} | {g["value"]:.4g} |{interval} '
            f'{g["compare"]} {g["target"]:g} '
            f'| {"yes" if g["met"] else "no"} '
            f'| {g["short_by"]:.4g} | {_noise(g)} |'
        )
    return '\n'.join(lines) + '\n'


def write_results(results: dict, out_dir: str, name: str) -> Dict[str, str]:
    """``name.json``, ``name.md`` and ``name.png`` in ``out_dir``."""
    m = results['methods']
    png = None
    if m:  # a tuning-only run reports no method on val
        png = plot_miou_vs_level(
            {k: e['levels'] for k, e in m.items()},
            osp.join(out_dir, f'{name}.png'),
            clean={k: e['clean_miou'] for k, e in m.items()},
        )
    paths = dict(
        json=atomic_write(
            osp.join(out_dir, f'{name}.json'), json.dumps(results, indent=2)
        ),
        md=atomic_write(
            osp.join(out_dir, f'{name}.md'),
            results_markdown(results, png and osp.basename(png)),
        ),
    )
    if png:
        paths['png'] = png
    return paths


def check_results_schema(results: dict, methods: Sequence[str] = None):
    """Raise ValueError unless ``results`` has the documented shape."""
    methods = REQUIRED_METHODS if methods is None else methods
    for key, kind in (
        ('command', str),
        ('commit', str),
        ('wall_time_s', float),
        ('split', str),
        ('methods', dict),
    ):
        if not isinstance(results.get(key), kind):
            raise ValueError(f'results[{key!r}] must be a {kind.__name__}')
    for name in methods:
        entry = results['methods'].get(name)
        if entry is None:
            raise ValueError(f'results lack method {name!r}')
        for key in (
            'mean_miou',
            'clean_miou',
            'memory_ratio',
            'adaptor_fraction',
        ):
            if not isinstance(entry.get(key), (int, float)):
                raise ValueError(f'{name}.{key} must be a number')
        if not entry['levels']:
            raise ValueError(f'{name}.levels is empty')
        seeds = entry.get('seeds')
        if seeds is not None and not (
            isinstance(seeds, list)
            and seeds
            and isinstance(entry.get('mean_miou_std'), (int, float))
        ):
            raise ValueError(
                f'{name}.seeds must be a non-empty list beside a numeric '
                'mean_miou_std'
            )
