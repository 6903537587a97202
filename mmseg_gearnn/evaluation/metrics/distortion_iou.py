"""mIoU per distortion type and level."""

import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS
from prettytable import PrettyTable

from ...distortions import CLEAN, CLEAN_GEAR, DistortionSpace, build_space
from ...utils.io import atomic_write
from ..robustness import robustness_summary

# (distortion type, level); (CLEAN, None) for a clean sample.
GroupKey = Tuple[str, Optional[Union[int, float]]]


def _plain(level):
    """A Python number from a numpy or torch scalar (kept as is otherwise)."""
    return level.item() if hasattr(level, 'item') else level


def _nanmean(values) -> float:
    """Mean of the non-NaN values; NaN (without a warning) if none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def _percent(value: float) -> float:
    """A fraction as a percentage rounded to two decimals, as mmseg does."""
    return float(np.round(value * 100, 2))


def _json_number(value: float) -> Optional[float]:
    return None if math.isnan(value) else value


def format_miou_table(
    report: dict, space: Optional[DistortionSpace] = None
) -> str:
    """The mIoU table that :class:`DistortionIoUMetric` logs.

    One row per distortion type, its levels from mild to harsh in columns
    (each cell ``level: mIoU``) and their mean; then rows for the clean
    samples, the mean over all distorted (type, level) groups and all
    samples (only the ``Mean`` column).

    Args:
        report (dict): the report of :meth:`DistortionIoUMetric.report`.
        space (DistortionSpace, optional): if given, every type and level
            of the space has its cell (``-`` where nothing was evaluated),
            so column ``Level i`` is the space's i-th level of each type.

    Returns:
        str: the table.
    """
    if space is not None:
        grid = {t: [str(lv) for lv in space.levels(t)] for t in space.types}
    else:
        grid = {t: list(levels) for t, levels in report['levels'].items()}
    width = max([len(v) for v in grid.values()] + [1])
    table = PrettyTable()
    table.field_names = (
        ['Type'] + [f'Level {i + 1}' for i in range(width)] + ['Mean']
    )
    table.align['Type'] = 'l'

    def fmt(value) -> str:
        return '-' if value is None else f'{value:.2f}'

    for dtype, levels in grid.items():
        measured = report['levels'].get(dtype, {})
        cells = [f'{lv}: {fmt(measured.get(lv))}' for lv in levels]
        cells += [''] * (width - len(cells))
        table.add_row(
            [dtype] + cells + [fmt(report['per_type_mean'].get(dtype))]
        )
    blank = [''] * width
    table.add_row([CLEAN] + blank + [fmt(report['clean'])])
    table.add_row(['mean_distorted'] + blank + [fmt(report['mean_distorted'])])
    table.add_row(['overall'] + blank + [fmt(report['overall']['mIoU'])])
    return table.get_string()


def _rounded(value, digits: int):
    """``value`` rounded, through the dicts of a summary (None kept)."""
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return None if value is None else round(value, digits)


def format_robustness_table(summary: dict) -> str:
    """The corruption metrics that :class:`DistortionIoUMetric` logs: P,
    mPC and rPC, then the mIoU of each group and each corruption (mean
    over severities); see :mod:`mmseg_gearnn.evaluation.robustness`."""
    table = PrettyTable()
    table.field_names = ['Metric', 'Value']
    table.align['Metric'] = 'l'

    def fmt(value, digits=2) -> str:
        return '-' if value is None else f'{value:.{digits}f}'

    table.add_row(['P (clean mIoU)', fmt(summary['P'])])
    table.add_row(['mPC (mean over corruptions)', fmt(summary['mPC'])])
    table.add_row(['rPC (mPC / P)', fmt(summary['rPC'], 3)])
    for group, miou in summary['per_group'].items():
        table.add_row([f'{group} (group)', fmt(miou)])
    for corruption, miou in summary['per_corruption'].items():
        table.add_row([corruption, fmt(miou)])
    return table.get_string()


def format_class_table(report: dict) -> str:
    """Per-class IoU clean and averaged over the distorted levels, and the
    change between the two: which classes a distortion costs most."""
    per_class = report['per_class_iou']
    table = PrettyTable()
    table.field_names = ['Class', 'IoU clean', 'IoU mean distorted', 'Change']
    table.align['Class'] = 'l'

    def fmt(value) -> str:
        return '-' if value is None else f'{value:.2f}'

    for name, clean in per_class['clean'].items():
        distorted = per_class['mean_distorted'][name]
        change = (
            None if clean is None or distorted is None else distorted - clean
        )
        table.add_row([name, fmt(clean), fmt(distorted), fmt(change)])
    return table.get_string()


@METRICS.register_module()
class DistortionIoUMetric(BaseMetric):
    """mIoU overall and per distortion type and level.

    Like mmseg's :class:`IoUMetric` (and through its static helpers), but
    each sample is also counted in the group of its distortion, read from
    ``data_sample['distortion']`` (a ``metainfo`` key: add ``'distortion'``
    to ``PackSegInputs``'s ``meta_keys``). A sample without it, or with
    type ``'clean'``, is clean. A group's IoU is accumulated over its
    samples, as mmseg does over the dataset.

    Returned metrics (percent, two decimals; each key only when the group
    has samples)::

        aAcc, mIoU, mAcc               all samples
        clean/mIoU                     clean samples
        {type}/{level}/mIoU            e.g. jpeg/10/mIoU, brightness/0.2/mIoU
        {type}/mean/mIoU               mean over the type's levels
        mean_distorted/mIoU            mean over every distorted
                                       (type, level) group, each weighing
                                       the same

    Where the groups hold standard corruptions (types ``'ic_' + name``),
    also (see :mod:`mmseg_gearnn.evaluation.robustness`)::

        mPC, rPC                       mean over the benchmark corruptions
                                       and severities, and mPC / clean
        {group}/mIoU                   noise, blur, weather, digital,
                                       held_out

    Types and levels come in the order first seen or, with ``space``, in
    the space's order; with ``space`` a type or level outside it is an
    error (levels match up to float rounding, never snap to the nearest).
    The JSON file (``output_file``) holds::

        {"overall": {"aAcc", "mIoU", "mAcc"}, "clean": x,
         "levels": {type: {level: miou}}, "per_type_mean": {type: miou},
         "mean_distorted": x,
         "num_samples": {"overall": n, "clean": n,
                         "levels": {type: {level: n}}},
         "per_class_iou": {"clean": {class: iou},
                           "mean_distorted": {class: iou},
                           "levels": {type: {level: {class: iou}}}}}

    with levels as strings and ``null`` for a missing value; with
    corruptions, also ``"robustness": {"P", "mPC", "rPC", "per_corruption":
    {corruption: miou}, "per_group": {group: miou}}`` (rPC a fraction).

    Args:
        ignore_index (int): label ignored in evaluation. Defaults to 255.
        space (dict | DistortionSpace, optional): the distortion space
            (``distortion_space`` of the configs). Defaults to None.
        output_file (str, optional): JSON file to write the report to
            (atomically, on the main process). Defaults to None.
        nan_to_num (int, optional): if given, replaces the NaN IoU of a class
            absent from both prediction and label of a group, as in
            :class:`IoUMetric`. Defaults to None (such classes are skipped).
        collect_device (str): ``'cpu'`` or ``'gpu'``, the device used to
            collect results across ranks. Defaults to ``'cpu'``.
        prefix (str, optional): prefix of the metric names. Defaults to None.
        collect_dir (str, optional): folder for collecting results across
            ranks on the CPU. Defaults to None.
        output_dir (str, optional): folder for each sample's predicted
            label map, a PNG named as mmseg's :class:`IoUMetric` names it
            (``{image}.png``) for a clean sample and ``{image}_{type}_{level}
            .png`` for a distorted one (``tools/test.py --out``). Defaults to
            None.
        format_only (bool): only write the predictions, compute no metric
            (e.g. for a test set without labels). Defaults to False.

    Example:
        >>> val_evaluator = dict(
        ...     type='DistortionIoUMetric',
        ...     space=distortion_space,
        ...     output_file='work_dirs/x/miou_per_level.json')
    """

    def __init__(
        self,
        ignore_index: int = 255,
        space: Optional[Union[dict, DistortionSpace]] = None,
        output_file: Optional[str] = None,
        nan_to_num: Optional[int] = None,
        collect_device: str = 'cpu',
        prefix: Optional[str] = None,
        collect_dir: Optional[str] = None,
        output_dir: Optional[str] = None,
        format_only: bool = False,
    ) -> None:
        if format_only and output_dir is None:
            raise ValueError('format_only=True needs an output_dir')
        super().__init__(
            collect_device=collect_device,
            prefix=prefix,
            collect_dir=collect_dir,
        )
        self.ignore_index = ignore_index
        self.space = None
        if space is not None:
            # A strict copy: evaluation must never regroup a sample into
            # the nearest level.
            self.space = DistortionSpace(
                build_space(space).distortions, snap='error'
            )
        self.output_file = output_file
        self.nan_to_num = nan_to_num
        self.output_dir = output_dir
        self.format_only = format_only

    def group_of(self, data_sample: dict) -> GroupKey:
        """The (type, level) group of one sample; ``('clean', None)`` for a
        clean sample or one without distortion metadata."""
        distortion = data_sample.get('distortion')
        if distortion is None:
            distortion = (data_sample.get('metainfo') or {}).get('distortion')
        if not distortion:
            return CLEAN, None
        dtype = distortion.get('type')
        level = _plain(distortion.get('level'))
        if dtype is None:
            gear = _plain(distortion.get('gear'))
            if gear is None or gear == CLEAN_GEAR:
                return CLEAN, None
            if self.space is None:
                raise ValueError(
                    f'distortion metadata {distortion} gives only a gear: '
                    'give DistortionIoUMetric the distortion space to map '
                    'it to a (type, level)'
                )
            dtype, level = self.space.level_of(int(gear))
        if dtype == CLEAN:
            return CLEAN, None
        if level is None:
            raise ValueError(
                f'distortion metadata {distortion} has a type but no level'
            )
        if self.space is not None:
            # Raises a ValueError naming a type or level outside the space.
            level = self.space.resolve_level(dtype, level)
        return str(dtype), level

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Store the class areas and the group of each sample.

        Args:
            data_batch (dict): a batch of data from the dataloader.
            data_samples (Sequence[dict]): a batch of outputs from the
                model, with ``pred_sem_seg`` and ``gt_sem_seg``.
        """
        if not self.dataset_meta or 'classes' not in self.dataset_meta:
            raise ValueError(
                "DistortionIoUMetric needs dataset_meta['classes'] (the "
                'runner sets it from the dataset)'
            )
        num_classes = len(self.dataset_meta['classes'])
        for data_sample in data_samples:
            pred_label = data_sample['pred_sem_seg']['data'].squeeze()
            if self.output_dir is not None:
                self._save_prediction(data_sample, pred_label)
            if self.format_only:
                continue
            label = data_sample['gt_sem_seg']['data'].squeeze().to(pred_label)
            areas = IoUMetric.intersect_and_union(
                pred_label, label, num_classes, self.ignore_index
            )
            self.results.append((self.group_of(data_sample), *areas))

    def _save_prediction(self, data_sample: dict, pred_label) -> None:
        """Writes a sample's label map as mmseg's IoUMetric does, named
        also by its distortion (a sweep sees each image once per level)."""
        from PIL import Image

        name = osp.splitext(osp.basename(data_sample['img_path']))[0]
        dtype, level = self.group_of(data_sample)
        if dtype != CLEAN:
            name = f'{name}_{dtype}_{level}'
        mask = pred_label.cpu().numpy()
        if data_sample.get('reduce_zero_label', False):
            mask = mask + 1
        os.makedirs(self.output_dir, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8)).save(
            osp.join(self.output_dir, f'{name}.png')
        )

    def _order(self, keys: List[GroupKey]) -> List[GroupKey]:
        """Distorted group keys in the space's order, else first seen."""
        if self.space is not None:
            types = self.space.types
            return sorted(
                keys,
                key=lambda k: (
                    types.index(k[0]),
                    self.space.levels(k[0]).index(k[1]),
                ),
            )
        type_rank: Dict[str, int] = {}
        for dtype, _ in keys:
            type_rank.setdefault(dtype, len(type_rank))
        # A stable sort keeps the levels of a type in their first-seen order.
        return sorted(keys, key=lambda k: type_rank[k[0]])

    def _summary(self, areas: List[tuple]) -> dict:
        """aAcc, mIoU and mAcc (fractions) of the summed areas, and the
        IoU of each class (``IoU``, an array)."""
        totals = [sum(column) for column in zip(*areas)]
        ret = IoUMetric.total_area_to_metrics(
            *totals, metrics=['mIoU'], nan_to_num=self.nan_to_num
        )
        return dict(
            aAcc=float(ret['aAcc']),
            mIoU=_nanmean(ret['IoU']),
            mAcc=_nanmean(ret['Acc']),
            IoU=np.asarray(ret['IoU'], dtype=np.float64),
        )

    def _class_names(self, num_classes: int) -> List[str]:
        classes = (self.dataset_meta or {}).get('classes')
        if classes is not None and len(classes) == num_classes:
            return [str(c) for c in classes]
        return [str(i) for i in range(num_classes)]

    def report(self, results: list) -> dict:
        """The report (the JSON content) of collected results.

        Args:
            results (list): ``(group, area_intersect, area_union,
                area_pred_label, area_label)`` per sample.

        Returns:
            dict: see the class docstring; mIoU in percent.
        """
        groups: Dict[GroupKey, List[tuple]] = {}
        for key, *areas in results:
            groups.setdefault(tuple(key), []).append(areas)
        overall = self._summary([areas for _, *areas in results])
        names = self._class_names(len(overall['IoU']))
        unknown = np.full(len(names), math.nan)
        clean = groups.pop((CLEAN, None), [])
        clean_summary = self._summary(clean) if clean else None
        clean_miou = clean_summary['mIoU'] if clean else math.nan

        def by_class(ious) -> Dict[str, Optional[float]]:
            return {n: _json_number(_percent(v)) for n, v in zip(names, ious)}

        class_levels: Dict[str, Dict[str, dict]] = {}
        class_distorted: List[np.ndarray] = []

        levels: Dict[str, Dict[str, Optional[float]]] = {}
        counts: Dict[str, Dict[str, int]] = {}
        type_values: Dict[str, List[float]] = {}
        distorted: List[float] = []
        for dtype, level in self._order(list(groups)):
            samples = groups[(dtype, level)]
            summary = self._summary(samples)
            miou = summary['mIoU']
            class_levels.setdefault(dtype, {})[str(level)] = by_class(
                summary['IoU']
            )
            class_distorted.append(summary['IoU'])
            levels.setdefault(dtype, {})[str(level)] = _json_number(
                _percent(miou)
            )
            counts.setdefault(dtype, {})[str(level)] = len(samples)
            type_values.setdefault(dtype, []).append(miou)
            distorted.append(miou)

        def pct(value: float) -> Optional[float]:
            return _json_number(_percent(value))

        report = dict(
            overall={k: pct(overall[k]) for k in ('aAcc', 'mIoU', 'mAcc')},
            clean=pct(clean_miou),
            levels=levels,
            per_type_mean={
                t: pct(_nanmean(v)) for t, v in type_values.items()
            },
            mean_distorted=pct(_nanmean(distorted)),
            num_samples=dict(
                overall=len(results), clean=len(clean), levels=counts
            ),
            per_class_iou=dict(
                clean=by_class(clean_summary['IoU'] if clean else unknown),
                # Each distorted (type, level) weighs the same, as in
                # mean_distorted.
                mean_distorted=by_class(
                    [_nanmean(c) for c in zip(*class_distorted)]
                    if class_distorted
                    else unknown
                ),
                levels=class_levels,
            ),
        )
        summary = robustness_summary(report['clean'], levels)
        if summary['per_corruption']:
            report['robustness'] = dict(
                _rounded(summary, 2), rPC=_rounded(summary['rPC'], 4)
            )
        return report

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Compute the metrics from processed results.

        Args:
            results (list): the per-sample results of :meth:`process`,
                collected from every rank.

        Returns:
            Dict[str, float]: flat metrics; see the class docstring.
        """
        logger: MMLogger = MMLogger.get_current_instance()
        if self.format_only:
            print_log(f'predictions written to {self.output_dir}', logger)
            return {}
        report = self.report(results)

        def num(value: Optional[float]) -> float:
            return math.nan if value is None else value

        metrics = {k: num(v) for k, v in report['overall'].items()}
        if report['num_samples']['clean']:
            metrics[f'{CLEAN}/mIoU'] = num(report['clean'])
        for dtype, levels in report['levels'].items():
            for level, miou in levels.items():
                metrics[f'{dtype}/{level}/mIoU'] = num(miou)
            metrics[f'{dtype}/mean/mIoU'] = num(report['per_type_mean'][dtype])
        if report['levels']:
            metrics['mean_distorted/mIoU'] = num(report['mean_distorted'])
        robustness = report.get('robustness')
        if robustness is not None:
            metrics['mPC'] = num(robustness['mPC'])
            metrics['rPC'] = num(robustness['rPC'])
            for group, miou in robustness['per_group'].items():
                metrics[f'{group}/mIoU'] = num(miou)

        print_log('mIoU per distortion type and level:', logger)
        print_log('\n' + format_miou_table(report, self.space), logger=logger)
        if report['num_samples']['clean'] and report['levels']:
            print_log('IoU per class:', logger)
            print_log('\n' + format_class_table(report), logger=logger)
        if robustness is not None:
            print_log('Robustness to the standard corruptions:', logger)
            print_log(
                '\n' + format_robustness_table(robustness), logger=logger
            )
        if self.output_file is not None:
            atomic_write(
                self.output_file, json.dumps(report, indent=2, allow_nan=False)
            )
            print_log(
                'mIoU per distortion level written to '
                f'{osp.abspath(self.output_file)}',
                logger,
            )
        return metrics
