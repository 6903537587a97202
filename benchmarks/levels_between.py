"""Levels between gears and compound distortions: where should they run?

    python benchmarks/levels_between.py CONFIG CHECKPOINT \\
        --selection SELECTION.json [--data-root DIR] [--val-images N]

Evaluates a trained GearNN checkpoint (its gear config, checkpoint and
adaptor selection) on conditions that no gear was trained for:

a. every level halfway between two adjacent levels of a type (JPEG
   qualities rounded to integers), run on the nearest gear
   (``level_routing='nearest'``) and on the interpolated adaptors of the
   two bracketing gears (``level_routing='interpolate'``);
b. compound distortions, two at once (by default each other type, then
   JPEG, e.g. dark then compressed, at mid-to-harsh levels: middle and
   middle, harshest and middle, middle and harshest), under each
   ``compound_routing``: ``'first'``, ``'dominant'`` by level rank,
   ``'dominant'`` by the clean model's measured mIoU drop, and
   ``'blend'``;

each with the clean model (gear 0, the frozen base) as the reference. All
policy runs sweep the same items in the same order, so a noise distortion
draws the same noise in every run. Writes the mIoU per condition and the
mean per policy to ``benchmarks/results/levels_between.json`` and prints
the tables.

The measured drop (for ``'dominant'``) comes from ``--severity``, a
``DistortionIoUMetric`` report of the clean model over the gear table
(e.g. the ``levels.json`` of its evaluation), else from one more run of the
clean model over the table's levels.
"""

import argparse
import copy
import json
import math
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import mmseg_gearnn  # noqa: F401
from gearnn_bench.provenance import (
    REPO_ROOT,
    RESULTS_DIR,
    add_allow_dirty,
    record,
)
from mmseg_gearnn.apis import evaluate_levels
from mmseg_gearnn.distortions import (
    KERNELS,
    DistortionSpace,
    build_space,
    compound_record,
)
from mmseg_gearnn.models.routing import gear_severity, severity_of
from mmseg_gearnn.utils import set_data_root
from mmseg_gearnn.utils.console import keep_warnings_in, quiet_console
from mmseg_gearnn.utils.io import atomic_write

# Kernels that take integer levels only.
INTEGER_TYPES = tuple(t for t, k in KERNELS.items() if k.integer_levels)
CLEAN_MODEL = 'clean model'
MID_POLICIES = ('nearest', 'interpolate')
COMPOUND_POLICIES = ('first', 'dominant (rank)', 'dominant (drop)', 'blend')


def _level(dtype: str, value: float):
    if dtype in INTEGER_TYPES:
        return int(round(value))
    return round(float(value), 6)


def mid_levels(space: DistortionSpace) -> Dict[str, list]:
    """Per type, the level halfway between each two adjacent listed levels
    (in the table's order, mild to harsh), leaving out any that rounds onto
    a listed level."""
    mids = {}
    for dtype in space.types:
        levels = space.levels(dtype)
        found = []
        for a, b in zip(levels, levels[1:]):
            mid = _level(dtype, (float(a) + float(b)) / 2)
            if space.listed_level(dtype, mid) is None and mid not in found:
                found.append(mid)
        if found:
            mids[dtype] = found
    return mids


def default_compounds(space: DistortionSpace) -> List[list]:
    """Each other type then JPEG (or each two adjacent types without JPEG)
    at mid-to-harsh levels: both at the middle level of their type's table,
    the first harshest and the second middle, and the first middle and the
    second harshest (so that the policies that pick one component can
    disagree)."""

    def at(dtype, where):
        levels = space.levels(dtype)
        index = len(levels) // 2 if where == 'middle' else len(levels) - 1
        return dict(type=dtype, level=levels[index])

    types = space.types
    if 'jpeg' in types:
        pairs = [(t, 'jpeg') for t in types if t != 'jpeg']
    else:
        pairs = list(zip(types, types[1:]))
    compounds = []
    for a, b in pairs:
        for where_a, where_b in (
            ('middle', 'middle'),
            ('harsh', 'middle'),
            ('middle', 'harsh'),
        ):
            compound = [at(a, where_a), at(b, where_b)]
            if compound not in compounds:
                compounds.append(compound)
    return compounds


def parse_compound(text: str) -> list:
    """``'brightness:0.1,jpeg:5'`` -> components."""
    components = []
    for part in text.split(','):
        dtype, _, level = part.partition(':')
        if not level:
            raise ValueError(
                f'compound {text!r}: write TYPE:LEVEL,TYPE:LEVEL, e.g. '
                'brightness:0.1,jpeg:5'
            )
        value = float(level)
        components.append(dict(type=dtype, level=_level(dtype, value)))
    return components


def _requested_pipeline(pipeline: list, space: dict) -> list:
    steps = [copy.deepcopy(s) for s in pipeline]
    found = 0
    for i, step in enumerate(steps):
        if step.get('type') == 'RequestedDistortion':
            # The measurement space is not the model's gear table: its
            # records carry type and level only.
            steps[i] = dict(
                type='RequestedDistortion', space=space, record_gear=False
            )
            found += 1
    if found != 1:
        raise ValueError(
            'the test pipeline needs exactly one RequestedDistortion, found '
            f'{found}'
        )
    return steps


def sweep_config(
    cfg: Config,
    levels: Optional[Dict[str, list]],
    compounds: Sequence,
    include_clean: bool = False,
    val_images: Optional[int] = None,
) -> Config:
    """``cfg`` whose test loader sweeps ``levels`` (a measurement space,
    recorded without gears) then ``compounds``, grouped by the metric by
    type and level (no gear table)."""
    cfg = copy.deepcopy(cfg)
    table = build_space(cfg.model.space)
    dataset = cfg.test_dataloader.dataset
    inner = (
        dataset.dataset
        if dataset.get('type') == 'DistortionSweepDataset'
        else dataset
    )
    inner = copy.deepcopy(inner)
    # A placeholder space where no level is swept.
    space = dict(distortions=levels or table.distortions, snap='error')
    inner['pipeline'] = _requested_pipeline(inner['pipeline'], space)
    if val_images is not None:
        inner['indices'] = val_images
    cfg.test_dataloader.dataset = dict(
        type='DistortionSweepDataset',
        dataset=inner,
        space=space,
        include_clean=include_clean,
        include_levels=bool(levels),
        compounds=[list(c) for c in compounds],
    )
    cfg.test_evaluator = dict(
        cfg.test_evaluator, type='DistortionIoUMetric', space=None
    )
    return cfg


def _model_options(cfg: Config, **options) -> Config:
    cfg = copy.deepcopy(cfg)
    # snap='nearest': 'nearest' routing takes an unlisted level to the
    # closest gear instead of refusing it (the gear table is unchanged).
    cfg.model.space = dict(build_space(cfg.model.space).to_dict())
    cfg.model.space['snap'] = 'nearest'
    cfg.model.update(options)
    return cfg


def _listed_or_given(space: DistortionSpace, dtype: str, level):
    if dtype in space.types:
        listed = space.listed_level(dtype, level)
        if listed is not None:
            return listed
    return level


def _miou(report: dict, dtype: str, level) -> Optional[float]:
    return (report['levels'].get(dtype) or {}).get(str(level))


def _mean(values) -> Optional[float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return round(sum(values) / len(values), 2) if values else None


def measure(
    cfg: Config,
    checkpoint: str,
    work_dir: str,
    val_images: Optional[int] = None,
    compounds: Optional[Sequence] = None,
    severity: Optional[str] = None,
) -> dict:
    """Every run of the module docstring; returns the results dict."""
    init_default_scope('mmseg')
    start = time.time()
    table = build_space(cfg.model.space)
    mids = mid_levels(table)
    if compounds is None:
        compounds = default_compounds(table)
    # A listed level as the table writes it (60, not 60.0).
    compounds = [
        compound_record(
            [
                dict(
                    type=t,
                    level=_listed_or_given(table, t, lv),
                )
                for t, lv in ((c['type'], c['level']) for c in compound)
            ]
        )
        for compound in compounds
    ]
    components = [c['components'] for c in compounds]
    reports = {}

    def run(name, levels, comps, include_clean=False, **options):
        run_cfg = sweep_config(
            _model_options(cfg, **options),
            levels,
            comps,
            include_clean=include_clean,
            val_images=val_images,
        )
        reports[name] = evaluate_levels(
            run_cfg, checkpoint, osp.join(work_dir, _slug(name))
        )
        return reports[name]

    if severity is None:
        # The clean model on the gear table: the measured drop per level.
        run(
            'severity',
            table.distortions,
            [],
            include_clean=True,
            routing='default',
            default_gear=0,
        )
        severity = osp.join(work_dir, 'severity', 'levels.json')
    # The same items, in the same order, for every policy.
    run(CLEAN_MODEL, mids, components, routing='default', default_gear=0)
    run('nearest / first', mids, components, compound_routing='first')
    run(
        'interpolate / blend',
        mids,
        components,
        level_routing='interpolate',
        compound_routing='blend',
    )
    # 'dominant' runs one component's gear: where it picks the same
    # component as another policy for every compound, the routes and so the
    # predictions are that policy's (the same items in the same order), and
    # the run is not repeated.
    rank = gear_severity(table)
    drop = gear_severity(table, severity)
    picks = {
        'dominant (rank)': [_dominant(table, rank, c) for c in components],
        'dominant (drop)': [_dominant(table, drop, c) for c in components],
    }
    same_as = {}
    for name, options in (
        ('dominant (rank)', dict(compound_routing='dominant')),
        (
            'dominant (drop)',
            dict(compound_routing='dominant', compound_severity=severity),
        ),
    ):
        if not any(picks[name]):
            same_as[name] = 'nearest / first'
        elif (
            name == 'dominant (drop)'
            and picks[name] == picks['dominant (rank)']
        ):
            same_as[name] = 'dominant (rank)'
        if name in same_as:
            reports[name] = reports[same_as[name]]
        else:
            run(name, mids, components, **options)

    by_policy = {
        'mid_levels': {
            CLEAN_MODEL: reports[CLEAN_MODEL],
            'nearest': reports['nearest / first'],
            'interpolate': reports['interpolate / blend'],
        },
        'compounds': {
            CLEAN_MODEL: reports[CLEAN_MODEL],
            'first': reports['nearest / first'],
            'dominant (rank)': reports['dominant (rank)'],
            'dominant (drop)': reports['dominant (drop)'],
            'blend': reports['interpolate / blend'],
        },
    }
    conditions = {
        'mid_levels': [
            (dtype, level)
            for dtype, levels in mids.items()
            for level in levels
        ],
        'compounds': [(c['type'], c['level']) for c in compounds],
    }
    miou, means = {}, {}
    for part, policies in by_policy.items():
        miou[part], means[part] = {}, {}
        for policy, report in policies.items():
            values = {
                f'{dtype}/{level}': _miou(report, dtype, level)
                for dtype, level in conditions[part]
            }
            miou[part][policy] = values
            means[part][policy] = _mean(values.values())

    mid_info = []
    for dtype, level in conditions['mid_levels']:
        pairs = table.bracketing_gears(dtype, level)
        mid_info.append(
            dict(
                type=dtype,
                level=level,
                between=[table.level_of(g)[1] for g, _ in pairs],
                weights=[round(w, 4) for _, w in pairs],
                nearest=table.level_of(
                    DistortionSpace(table.distortions, snap='nearest').gear_id(
                        dtype, level
                    )
                )[1],
            )
        )
    compound_info = [
        dict(
            name=f'{c["type"]}/{c["level"]}',
            components=c['components'],
            dominant_rank=c['components'][rank_pick]['type'],
            dominant_drop=c['components'][drop_pick]['type'],
        )
        for c, rank_pick, drop_pick in zip(
            compounds, picks['dominant (rank)'], picks['dominant (drop)']
        )
    ]
    return dict(
        dataset=_describe(cfg, val_images),
        clean_miou=_clean_miou(severity),
        mid_levels=mid_info,
        compounds=compound_info,
        severity=dict(
            source=severity,
            rank=_per_level(table, rank),
            drop=_per_level(table, drop),
        ),
        miou=miou,
        mean=means,
        not_rerun={
            policy: f'routes every compound as {other}: its results'
            for policy, other in same_as.items()
        },
        time_s=round(time.time() - start, 1),
    )


def _dominant(space: DistortionSpace, severity: list, components) -> int:
    """The index of the component that ``compound_routing='dominant'``
    picks (the first of equals)."""
    scores = [
        severity_of(space, severity, c['type'], c['level']) for c in components
    ]
    return scores.index(max(scores))


def _per_level(space: DistortionSpace, severity: list) -> dict:
    return {
        t: {
            str(lv): round(severity[space.gear_id(t, lv)], 3)
            for lv in space.levels(t)
        }
        for t in space.types
    }


def _clean_miou(report: str) -> Optional[float]:
    with open(report, encoding='utf-8') as f:
        return json.load(f).get('clean')


def _slug(name: str) -> str:
    return ''.join(c if c.isalnum() else '_' for c in name).strip('_')


def _describe(cfg: Config, val_images: Optional[int]) -> str:
    dataset = cfg.test_dataloader.dataset
    inner = dataset.get('dataset', dataset)
    where = inner.get('data_root') or inner.get('type')
    prefix = (inner.get('data_prefix') or {}).get('img_path', '')
    count = 'all' if val_images is None else f'the first {val_images}'
    return f'{where} {prefix} ({count} images)'.replace('  ', ' ')


def markdown(results: dict) -> str:
    """The two tables (mIoU %) of a results dict."""
    lines = []
    for part, title in (
        ('mid_levels', 'Levels halfway between two gears'),
        ('compounds', 'Compound distortions (applied left to right)'),
    ):
        policies = list(results['miou'][part])
        lines += [
            f'### {title}',
            '',
            '| condition | ' + ' | '.join(policies) + ' |',
            '|---|' + '---:|' * len(policies),
        ]
        conditions = list(results['miou'][part][policies[0]])
        for condition in conditions:
            cells = [
                _cell(results['miou'][part][p][condition]) for p in policies
            ]
            lines.append(f'| {condition} | ' + ' | '.join(cells) + ' |')
        means = [_cell(results['mean'][part][p]) for p in policies]
        lines += ['| **mean** | ' + ' | '.join(means) + ' |', '']
    return '\n'.join(lines)


def _cell(value) -> str:
    return '-' if value is None else f'{value:.2f}'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the GearNN (gear) config')
    parser.add_argument('checkpoint', help='its trained checkpoint')
    parser.add_argument(
        '--selection', help='the adaptor selection JSON (model.adaptor)'
    )
    parser.add_argument('--data-root', help='where the dataset is')
    parser.add_argument(
        '--val-images',
        type=int,
        help='evaluate only the first N images of the test split',
    )
    parser.add_argument(
        '--severity',
        help='a DistortionIoUMetric report of the clean model over the gear '
        "table, for 'dominant' by measured drop (else measured here)",
    )
    parser.add_argument(
        '--compounds',
        nargs='+',
        metavar='TYPE:LEVEL,TYPE:LEVEL',
        help='compound distortions, components in the order applied '
        '(default: each type then jpeg, at middle levels)',
    )
    parser.add_argument('--num-workers', type=int, help='test loader workers')
    parser.add_argument('--work-dir', default='work_dirs/levels_between')
    parser.add_argument(
        '--out',
        default=osp.join(RESULTS_DIR, 'levels_between.json'),
    )
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='config overrides'
    )
    add_allow_dirty(parser)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    keep_warnings_in(args.work_dir)
    source = record(args.out, args.allow_dirty)  # before any work
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.selection:
        if not osp.isfile(args.selection):
            raise FileNotFoundError(f'selection not found: {args.selection}')
        cfg.model.adaptor = args.selection
    if args.data_root:
        set_data_root(cfg, args.data_root)
    if args.num_workers is not None:
        cfg.test_dataloader.num_workers = args.num_workers
        cfg.test_dataloader.persistent_workers = args.num_workers > 0
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    compounds = (
        None
        if args.compounds is None
        else [parse_compound(c) for c in args.compounds]
    )
    results = measure(
        cfg,
        args.checkpoint,
        args.work_dir,
        val_images=args.val_images,
        compounds=compounds,
        severity=args.severity,
    )
    results = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        selection=args.selection,
        **source,
        **results,
        command='python '
        + ' '.join(
            [osp.relpath(osp.abspath(__file__), REPO_ROOT)]
            + list(sys.argv[1:] if argv is None else argv)
        ),
    )
    atomic_write(args.out, json.dumps(results, indent=2) + '\n')
    print(markdown(results))
    print(f'written to {args.out}')
    return results


if __name__ == '__main__':
    with quiet_console():  # third-party warnings: the work dir's log
        main()
