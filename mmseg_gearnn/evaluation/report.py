"""Reports of mIoU per distortion type and level: plot, markdown and CSV.

Every writer takes the same nested mapping::

    results = {method: {distortion_type: {level: miou}}}
    clean = {method: miou}          # optional

which is what :class:`DistortionIoUMetric` writes under ``'levels'`` and
``'clean'`` of its JSON file (see :func:`load_reports`). Where the types
are standard corruptions (``ic_*``), :func:`corruption_summaries` and
:func:`corruption_markdown` add the metrics of the literature (P, mPC,
rPC, per group and, against a reference method, mCE; see
:mod:`.robustness`). Levels are matched
by their string form, so ``10`` and ``'10'`` (a JSON key) are one level;
the order of types and levels is the order first seen (mild to harsh as
given). mIoU values are percentages; ``None`` or NaN marks a missing value.
Every file is written atomically (a temporary file, then ``os.replace``).
"""

import csv
import io
import json
import math
import os
from typing import Dict, List, Mapping, Optional, Tuple, Union

from ..utils.io import PathLike, atomic_write
from .robustness import corruption_table, robustness_summary

Number = Union[int, float]
LevelTable = Mapping[
    str, Mapping[str, Mapping[Union[str, Number], Optional[Number]]]
]


def _value(miou) -> float:
    """A float mIoU, NaN for a missing one."""
    if miou is None:
        return math.nan
    return float(miou)


def _fmt(miou) -> str:
    miou = _value(miou)
    return '-' if math.isnan(miou) else f'{miou:.2f}'


def _check(results: LevelTable, clean: Optional[Mapping]) -> None:
    if not isinstance(results, Mapping) or not results:
        raise ValueError(
            'results is empty: give {method: {type: {level: miou}}}'
        )
    for method, table in results.items():
        if not isinstance(table, Mapping):
            raise TypeError(
                f'results[{method!r}] must map distortion types to '
                f'{{level: miou}}, got {type(table).__name__}'
            )
        for dtype, levels in table.items():
            if not isinstance(levels, Mapping):
                raise TypeError(
                    f'results[{method!r}][{dtype!r}] must map levels to '
                    f'mIoU, got {type(levels).__name__}'
                )
    if clean is not None and not isinstance(clean, Mapping):
        raise TypeError(
            f'clean must map methods to mIoU, got {type(clean).__name__}'
        )


def _columns(results: LevelTable) -> List[Tuple[str, List[str]]]:
    """Every (type, [level, ...]) in the order first seen; levels as str."""
    columns: Dict[str, List[str]] = {}
    for table in results.values():
        for dtype, levels in table.items():
            seen = columns.setdefault(str(dtype), [])
            for level in levels:
                if str(level) not in seen:
                    seen.append(str(level))
    return list(columns.items())


def _lookup(results: LevelTable, method: str, dtype: str, level: str):
    levels = results[method].get(dtype, {})
    return {str(k): v for k, v in levels.items()}.get(level)


def load_reports(
    paths: Mapping[str, PathLike],
) -> Tuple[Dict[str, dict], Dict[str, Optional[float]]]:
    """Read the JSON files of :class:`DistortionIoUMetric`, one per method.

    Args:
        paths (Mapping[str, str]): method name -> JSON file.

    Returns:
        tuple[dict, dict]: ``results`` ({method: {type: {level: miou}}}) and
        ``clean`` ({method: miou}), ready for the writers of this module.
    """
    results, clean = {}, {}
    for method, path in paths.items():
        with open(path, encoding='utf-8') as f:
            report = json.load(f)
        if 'levels' not in report:
            raise ValueError(
                f'{path} is not a DistortionIoUMetric report: it has no '
                "'levels' key"
            )
        results[method] = report['levels']
        clean[method] = report.get('clean')
    return results, clean


def plot_miou_vs_level(
    results: LevelTable,
    out_png: PathLike,
    clean: Optional[Mapping[str, Optional[Number]]] = None,
    max_cols: int = 3,
    subplot_size: Tuple[float, float] = (4.0, 3.0),
    dpi: int = 100,
) -> str:
    """Plot mIoU against distortion level: one subplot per distortion type,
    one line per method, each method's clean mIoU as a dashed line of the
    same colour. The legend takes the first cell the subplots leave empty,
    else the first subplot.

    The image is ``min(T, max_cols) * subplot_size[0] * dpi`` pixels wide and
    ``ceil(T / max_cols) * subplot_size[1] * dpi`` pixels high for ``T``
    types. It is drawn on matplotlib's Agg canvas (pyplot's global state is
    left alone).

    Args:
        results (Mapping): {method: {type: {level: miou}}}, levels from mild
            to harsh; a level a method lacks is a gap in its line.
        out_png (str | PathLike): the PNG file to write.
        clean (Mapping, optional): {method: clean mIoU}.
        max_cols (int): subplots per row.
        subplot_size (tuple[float, float]): (width, height) of one subplot
            in inches.
        dpi (int): pixels per inch.

    Returns:
        str: the path written.
    """
    _check(results, clean)
    if max_cols < 1:
        raise ValueError(f'max_cols must be >= 1, got {max_cols}')
    columns = _columns(results)
    if not columns:
        raise ValueError('results hold no distortion type to plot')

    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    ncols = min(len(columns), max_cols)
    nrows = math.ceil(len(columns) / max_cols)
    fig = Figure(
        figsize=(ncols * subplot_size[0], nrows * subplot_size[1]), dpi=dpi
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colors = matplotlib.rcParams['axes.prop_cycle'].by_key()['color']
    handles = {}
    for i, (ax, (dtype, levels)) in enumerate(zip(axes, columns)):
        x = list(range(len(levels)))
        for j, method in enumerate(results):
            color = colors[j % len(colors)]
            y = [_value(_lookup(results, method, dtype, lv)) for lv in levels]
            (handles[str(method)],) = ax.plot(x, y, marker='o', color=color)
            clean_miou = _value((clean or {}).get(method))
            if not math.isnan(clean_miou):
                ax.axhline(
                    clean_miou, color=color, linestyle='--', linewidth=1
                )
        ax.set_xticks(x)
        ax.set_xticklabels(levels)
        ax.set_xlim(-0.5, len(levels) - 0.5)
        ax.set_title(dtype)
        ax.set_xlabel('level (mild to harsh)')
        if i % ncols == 0:
            ax.set_ylabel('mIoU (%)')
        ax.grid(alpha=0.3)
    if any(not math.isnan(_value(v)) for v in (clean or {}).values()):
        handles['clean mIoU (dashed)'] = Line2D(
            [], [], color='gray', linestyle='--', linewidth=1
        )
    spare = axes[len(columns) :]
    for ax in spare:
        ax.set_visible(False)
    # One entry per method; in a spare cell when the grid has one, so that
    # it hides no line.
    if len(spare):
        spare[0].set_visible(True)
        spare[0].axis('off')
        spare[0].legend(handles.values(), handles.keys(), loc='center')
    else:
        axes[0].legend(handles.values(), handles.keys(), fontsize='small')
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=dpi)
    return atomic_write(out_png, buf.getvalue())


def _mean_distorted(
    results: LevelTable, method: str, columns: List[Tuple[str, List[str]]]
) -> float:
    """Mean over every (type, level) column; NaN unless the method has
    them all (a mean over fewer levels would not compare)."""
    values = [
        _value(_lookup(results, method, dtype, lv))
        for dtype, levels in columns
        for lv in levels
    ]
    if not values or any(math.isnan(v) for v in values):
        return math.nan
    return sum(values) / len(values)


def markdown_table(
    results: LevelTable,
    clean: Optional[Mapping[str, Optional[Number]]] = None,
) -> str:
    """A markdown table: one row per method; columns ``clean`` (when
    given), one per (type, level), and ``mean distorted`` (the mean over
    every (type, level) column, ``-`` if the method lacks one).

    Args:
        results (Mapping): {method: {type: {level: miou}}}.
        clean (Mapping, optional): {method: clean mIoU}.

    Returns:
        str: the table, ending with a newline.
    """
    _check(results, clean)
    columns = _columns(results)
    header = ['Method']
    if clean is not None:
        header.append('clean')
    header += [f'{dtype} {lv}' for dtype, levels in columns for lv in levels]
    header.append('mean distorted')
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '|' + '|'.join([' --- '] + [' ---: '] * (len(header) - 1)) + '|',
    ]
    for method in results:
        row = [str(method)]
        if clean is not None:
            row.append(_fmt(clean.get(method)))
        row += [
            _fmt(_lookup(results, method, dtype, lv))
            for dtype, levels in columns
            for lv in levels
        ]
        row.append(_fmt(_mean_distorted(results, method, columns)))
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines) + '\n'


def write_markdown_table(
    results: LevelTable,
    path: PathLike,
    clean: Optional[Mapping[str, Optional[Number]]] = None,
) -> str:
    """Write :func:`markdown_table` to ``path``; returns the path."""
    return atomic_write(path, markdown_table(results, clean))


def write_csv(
    results: LevelTable,
    path: PathLike,
    clean: Optional[Mapping[str, Optional[Number]]] = None,
) -> str:
    """Write a long-format CSV: columns ``method, type, level, mIoU``, one
    row per value; a method's clean mIoU is the row with type ``clean``
    and an empty level; a missing value is an empty cell.

    Returns:
        str: the path written.
    """
    _check(results, clean)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['method', 'type', 'level', 'mIoU'])

    def cell(miou) -> str:
        miou = _value(miou)
        return '' if math.isnan(miou) else f'{miou:.2f}'

    for method, table in results.items():
        if clean is not None and method in clean:
            writer.writerow([method, 'clean', '', cell(clean[method])])
        for dtype, levels in table.items():
            for level, miou in levels.items():
                writer.writerow([method, dtype, level, cell(miou)])
    return atomic_write(path, buf.getvalue())


def corruption_summaries(
    results: LevelTable,
    clean: Optional[Mapping[str, Optional[Number]]] = None,
    reference: Optional[str] = None,
) -> Dict[str, dict]:
    """:func:`~.robustness.robustness_summary` of every method whose
    results hold a standard corruption (``{}`` if none does).

    Args:
        results (Mapping): {method: {type: {level: miou}}}.
        clean (Mapping, optional): {method: clean mIoU}, each method's P.
        reference (str, optional): the method whose levels are the
            reference of CE and mCE (e.g. the clean model); None leaves
            them out.

    Returns:
        dict: {method: summary}.
    """
    _check(results, clean)
    if reference is not None and reference not in results:
        raise ValueError(
            f'reference {reference!r} is not among the methods {list(results)}'
        )
    reference_levels = None if reference is None else results[reference]
    return {
        method: robustness_summary(
            (clean or {}).get(method), levels, reference_levels
        )
        for method, levels in results.items()
        if corruption_table(levels)
    }


def corruption_markdown(summaries: Mapping[str, dict]) -> str:
    """A markdown table of :func:`corruption_summaries`: one row per
    method; P, mPC, rPC, mCE (where a reference was given) and the mIoU of
    each group (mean over its corruptions and severities)."""
    groups: List[str] = []
    for summary in summaries.values():
        groups += [g for g in summary['per_group'] if g not in groups]
    with_ce = any('mCE' in s for s in summaries.values())
    header = ['Method', 'P', 'mPC', 'rPC'] + (['mCE'] if with_ce else [])
    header += groups
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '|' + '|'.join([' --- '] + [' ---: '] * (len(header) - 1)) + '|',
    ]
    for method, s in summaries.items():
        rpc = s['rPC']
        row = [str(method), _fmt(s['P']), _fmt(s['mPC'])]
        row.append('-' if rpc is None else f'{rpc:.3f}')
        if with_ce:
            mce = s.get('mCE')
            row.append('-' if mce is None else f'{mce:.3f}')
        row += [_fmt(s['per_group'].get(g)) for g in groups]
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines) + '\n'


def write_robustness_report(
    results: LevelTable,
    out_dir: PathLike,
    clean: Optional[Mapping[str, Optional[Number]]] = None,
    stem: str = 'robustness',
    reference: Optional[str] = None,
) -> Dict[str, str]:
    """Every report of one sweep in ``out_dir``: ``{stem}.md`` (the
    markdown table), ``{stem}.csv`` (one row per method, type and level),
    ``{stem}.json`` (``{'results', 'clean'}``) and ``{stem}.png`` (mIoU
    against level, one line per method).

    Where the results hold standard corruptions, the markdown starts with
    their P, mPC, rPC (and mCE against ``reference``) per method
    (:func:`corruption_markdown`) and the JSON holds them as
    ``'corruption'`` (:func:`corruption_summaries`).

    Returns:
        dict: ``md``, ``csv``, ``json`` and ``png`` paths.
    """
    _check(results, clean)
    summaries = corruption_summaries(results, clean, reference)
    out_dir = os.fspath(out_dir)
    base = os.path.join(out_dir, stem)
    md = markdown_table(results, clean) + '\n'
    content = dict(results=results, clean=clean or {})
    if summaries:
        md = corruption_markdown(summaries) + '\n' + md
        content['corruption'] = summaries
        content['reference'] = reference
    return dict(
        md=atomic_write(base + '.md', md),
        csv=write_csv(results, base + '.csv', clean),
        json=atomic_write(base + '.json', json.dumps(content, indent=2)),
        png=plot_miou_vs_level(results, base + '.png', clean=clean),
    )
