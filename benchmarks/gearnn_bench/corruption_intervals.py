"""Noise you can read: each frame's class areas kept at evaluation, and
bootstrap intervals over frames of the benchmarks' measures and margins.

:class:`FrameAreasHook` writes ``frame_areas.npz`` beside an evaluation's
report: per evaluated sample its frame, its distortion group (``clean``
or ``'{type}|{level}'``: a CamVid-C (corruption, severity) or a 20-level
(type, level)) and its four class-area vectors (intersection, union,
prediction, label), from which the mIoU of any subset of frames is exact.

:func:`bootstrap_measures` draws frames with replacement (the same draws
for every method and group: paired), recomputes each group's mIoU from
the summed areas of the drawn frames and each method's measures from
those (:func:`corruption_measures`: CamVid-C's P, mPC, rPC and held-out
mean; :func:`distortion_measures`: the 20-level benchmark's clean and
mean mIoU); :func:`interval` gives the 2.5 / 97.5 percentiles of any
measure or margin between two methods. A method run with several seeds
counts as the mean of its seeds on each draw. The frames of a test-time
adaptation stream are treated as independent (its adaptation order is
not resampled).
"""

import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.hooks import Hook
from mmseg.evaluation import IoUMetric
from mmseg.registry import HOOKS

from mmseg_gearnn.distortions import corruption_of
from mmseg_gearnn.evaluation.metrics import DistortionIoUMetric

AREAS_FILE = 'frame_areas.npz'
CLEAN_GROUP = 'clean'

# ``{group: mIoU per draw (B,)}`` -> ``{measure: value per draw (B,)}``.
Measures = Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]


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


def add_frame_areas_hook(cfg) -> None:
    """Add :class:`FrameAreasHook` to ``cfg``'s custom hooks (once), with
    the test evaluator's ignored label."""
    hooks = list(cfg.get('custom_hooks') or [])
    if any(h.get('type') == FrameAreasHook.__name__ for h in hooks):
        return
    evaluator = cfg.get('test_evaluator') or {}
    ignore_index = 255
    if isinstance(evaluator, dict):
        ignore_index = evaluator.get('ignore_index', 255)
    hooks.append(dict(type=FrameAreasHook.__name__, ignore_index=ignore_index))
    cfg.custom_hooks = hooks


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

    def group_miou(self, weights: np.ndarray) -> Dict[str, np.ndarray]:
        """Each group's mIoU for each row of frame ``weights`` ``(B, F)``
        (how often each frame is drawn)."""
        return {
            g: _miou(np.einsum('bf,fkc->bkc', weights, a))
            for g, a in self.groups.items()
        }


def _mean_of_groups(miou: Dict[str, np.ndarray], keep) -> np.ndarray:
    """The mean over the distorted groups whose type ``keep`` accepts
    (NaN where none is)."""
    cells = [
        v
        for g, v in miou.items()
        if g != CLEAN_GROUP and keep(g.split('|')[0])
    ]
    if not cells:
        draws = len(next(iter(miou.values())))
        return np.full(draws, np.nan)
    return np.nanmean(np.stack(cells), axis=0)


def corruption_measures(
    benchmark: Sequence[str], held_out: Sequence[str]
) -> Measures:
    """CamVid-C's measures: P (clean), mPC (mean over the ``benchmark``
    corruptions and severities), rPC (mPC / P) and held_out_mean (over
    the ``held_out`` corruptions)."""
    benchmark, held_out = set(benchmark), set(held_out)

    def measures(miou):
        p = miou.get(CLEAN_GROUP)
        if p is None:
            p = np.full(len(next(iter(miou.values()))), np.nan)
        mpc = _mean_of_groups(miou, lambda t: corruption_of(t) in benchmark)
        return dict(
            P=p,
            mPC=mpc,
            rPC=mpc / p,
            held_out_mean=_mean_of_groups(
                miou, lambda t: corruption_of(t) in held_out
            ),
        )

    return measures


def distortion_measures(miou: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The 20-level benchmark's measures, named as its results entries:
    ``clean_miou`` (the clean frames) and ``mean_miou`` (the mean over
    every distorted (type, level), each weighing the same, as
    ``mean_distorted`` of the evaluation report)."""
    clean = miou.get(CLEAN_GROUP)
    if clean is None:
        clean = np.full(len(next(iter(miou.values()))), np.nan)
    return dict(
        clean_miou=clean, mean_miou=_mean_of_groups(miou, lambda t: True)
    )


def bootstrap_measures(
    runs: Dict[str, List[Dict[str, Dict[str, np.ndarray]]]],
    measures: Measures,
    draws: int = 1000,
    seed: int = 0,
) -> Dict[str, Dict[str, np.ndarray]]:
    """Each method's ``measures`` on ``draws`` resamples of the frames.

    Args:
        runs (dict): ``{method: [areas of each seed]}``
            (:func:`load_frame_areas`).
        measures (Callable): from each group's mIoU per draw to each
            measure per draw (:func:`corruption_measures`,
            :func:`distortion_measures`).
        draws (int): bootstrap resamples; row 0 is the frames as measured.
        seed (int): seeds the draws.

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
            measures(FrameTable(a, frames).group_miou(weights)) for a in seeds
        ]
        out[name] = {
            k: np.mean([m[k] for m in per_seed], axis=0) for k in per_seed[0]
        }
    return out


def bootstrap(
    runs: Dict[str, List[Dict[str, Dict[str, np.ndarray]]]],
    benchmark: Sequence[str],
    held_out: Sequence[str],
    draws: int = 1000,
    seed: int = 0,
) -> Dict[str, Dict[str, np.ndarray]]:
    """CamVid-C's measures (:func:`corruption_measures` of ``benchmark``
    and ``held_out``) on ``draws`` resamples of the frames: see
    :func:`bootstrap_measures`."""
    return bootstrap_measures(
        runs, corruption_measures(benchmark, held_out), draws, seed
    )


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
