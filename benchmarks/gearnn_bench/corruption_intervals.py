"""Noise you can read: each frame's class areas kept at evaluation, and
bootstrap intervals over frames of the CamVid-C measures and margins.

:class:`FrameAreasHook` writes ``frame_areas.npz`` beside an evaluation's
report: per evaluated sample its frame, its (corruption, severity) group
and its four class-area vectors (intersection, union, prediction, label),
from which the mIoU of any subset of frames is exact.

:func:`bootstrap` draws frames with replacement (the same draws for every
method and condition: paired), recomputes each method's P, mPC and
held-out mean from the summed areas of the drawn frames, and returns the
2.5 / 97.5 percentiles of any measure or margin between two methods. A
method run with several seeds counts as the mean of its seeds on each
draw. The frames of a test-time adaptation stream are treated as
independent (its adaptation order is not resampled).
"""

import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.hooks import Hook
from mmseg.evaluation import IoUMetric
from mmseg.registry import HOOKS

from mmseg_gearnn.distortions import corruption_of
from mmseg_gearnn.evaluation.metrics import DistortionIoUMetric

AREAS_FILE = 'frame_areas.npz'
CLEAN_GROUP = 'clean'


@HOOKS.register_module()
class FrameAreasHook(Hook):
    """Writes each test sample's class areas to ``frame_areas.npz`` in the
    runner's work dir (see the module docstring), beside the test
    evaluator's report.

    Args:
        ignore_index (int): the label left out, as the evaluator's.
    """

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index
        self._grouper = DistortionIoUMetric()
        self._rows: List[tuple] = []

    def before_test(self, runner) -> None:
        self._rows = []

    def after_test_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        num_classes = len(runner.test_evaluator.dataset_meta['classes'])
        for sample in outputs or []:
            pred = sample.pred_sem_seg.data.squeeze()
            label = sample.gt_sem_seg.data.squeeze().to(pred)
            areas = IoUMetric.intersect_and_union(
                pred, label, num_classes, self.ignore_index
            )
            dtype, level = self._grouper.group_of(
                dict(metainfo=sample.metainfo)
            )
            group = CLEAN_GROUP if dtype == CLEAN_GROUP else f'{dtype}|{level}'
            self._rows.append(
                (
                    group,
                    osp.basename(sample.metainfo.get('img_path', '?')),
                    np.stack([a.cpu().numpy() for a in areas]),
                )
            )

    def after_test_epoch(self, runner, metrics=None) -> None:
        if not self._rows:
            return
        groups, frames, areas = zip(*self._rows)
        np.savez_compressed(
            osp.join(runner.work_dir, AREAS_FILE),
            groups=np.array(groups),
            frames=np.array(frames),
            areas=np.stack(areas).astype(np.float64),
        )
        self._rows = []


def load_frame_areas(paths: Sequence[str]) -> Dict[str, Dict[str, np.ndarray]]:
    """``{group: {frame: areas (4, C)}}`` merged from ``frame_areas.npz``
    files (a gear model's trained and untrained sweeps; the first file's
    entry where two have one)."""
    merged: Dict[str, Dict[str, np.ndarray]] = {}
    for path in paths:
        data = np.load(path)
        for group, frame, areas in zip(
            data['groups'], data['frames'], data['areas']
        ):
            # The first file's clean frames: a gear model's untrained sweep
            # evaluates them again under its estimator's routing.
            merged.setdefault(str(group), {}).setdefault(str(frame), areas)
    return merged


def _miou(areas: np.ndarray) -> np.ndarray:
    """mIoU in percent of summed areas ``(..., 4, C)``: the mean over
    classes with a union (as ``DistortionIoUMetric`` without
    ``nan_to_num``)."""
    inter, union = areas[..., 0, :], areas[..., 1, :]
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, inter / union, np.nan)
    return 100 * np.nanmean(iou, axis=-1)


class FrameTable:
    """One evaluated model's areas as arrays over a fixed frame order.

    Args:
        areas (dict): ``{group: {frame: areas}}`` (:func:`load_frame_areas`).
        frames (list[str]): the frame order every table shares.
    """

    def __init__(self, areas: Dict[str, Dict[str, np.ndarray]], frames):
        self.groups = {}
        for group, per_frame in areas.items():
            missing = [f for f in frames if f not in per_frame]
            if missing:
                raise ValueError(
                    f'group {group!r} lacks frames {missing[:3]}: the '
                    'sweeps of the compared methods differ'
                )
            self.groups[group] = np.stack([per_frame[f] for f in frames])

    def measures(
        self, weights: np.ndarray, benchmark: Sequence[str], held_out
    ) -> Dict[str, np.ndarray]:
        """P, mPC, rPC and held_out_mean for each row of frame ``weights``
        ``(B, F)`` (how often each frame is drawn)."""
        miou = {
            g: _miou(np.einsum('bf,fkc->bkc', weights, a))
            for g, a in self.groups.items()
        }

        def mean_of(corruptions):
            cells = [
                v
                for g, v in miou.items()
                if g != CLEAN_GROUP
                and corruption_of(g.split('|')[0]) in corruptions
            ]
            if not cells:
                return np.full(weights.shape[0], np.nan)
            return np.nanmean(np.stack(cells), axis=0)

        p = miou.get(CLEAN_GROUP, np.full(weights.shape[0], np.nan))
        mpc = mean_of(set(benchmark))
        return dict(
            P=p, mPC=mpc, rPC=mpc / p, held_out_mean=mean_of(set(held_out))
        )


def bootstrap(
    runs: Dict[str, List[Dict[str, Dict[str, np.ndarray]]]],
    benchmark: Sequence[str],
    held_out: Sequence[str],
    draws: int = 1000,
    seed: int = 0,
) -> Dict[str, Dict[str, np.ndarray]]:
    """Each method's measures on ``draws`` resamples of the frames.

    Args:
        runs (dict): ``{method: [areas of each seed]}``.
        benchmark (Sequence[str]): the corruptions of mPC.
        held_out (Sequence[str]): the corruptions of the held-out mean.
        draws (int): bootstrap resamples; row 0 is the frames as measured.

    Returns:
        dict: ``{method: {measure: (draws,) array}}``, the mean over seeds.
    """
    frames = None
    for seeds in runs.values():
        for areas in seeds:
            clean = sorted(areas.get(CLEAN_GROUP, {}))
            if frames is None:
                frames = clean
            elif clean != frames:
                raise ValueError(
                    'the methods were evaluated on different frames'
                )
    if not frames:
        raise ValueError('no clean frames to resample')
    rng = np.random.default_rng(seed)
    n = len(frames)
    picks = rng.integers(0, n, size=(draws, n))
    weights = np.zeros((draws, n))
    np.add.at(weights, (np.arange(draws)[:, None], picks), 1.0)
    weights[0] = 1.0  # the measured frames
    out = {}
    for name, seeds in runs.items():
        per_seed = [
            FrameTable(a, frames).measures(weights, benchmark, held_out)
            for a in seeds
        ]
        out[name] = {
            k: np.mean([m[k] for m in per_seed], axis=0) for k in per_seed[0]
        }
    return out


def interval(values: np.ndarray, level: float = 0.95) -> Tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``values``
    (row 0, the measured value, included)."""
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def margin_values(
    draws: Dict[str, Dict[str, np.ndarray]],
    method: str,
    measure: str,
    other: Optional[str],
    scale: float = 1.0,
) -> np.ndarray:
    """``measure`` of ``method`` minus ``scale`` times that of ``other``
    (alone without one), on every draw."""
    values = draws[method][measure]
    if other is None:
        return values
    return values - scale * draws[other][measure]
