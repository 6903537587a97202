"""Train and evaluate a :class:`DistortionEstimator`.

Clean images are drawn from a dataset (any mmseg dataset config, a built
dataset, or a list of images), each is distorted with every gear's
(type, level) by the kernels of :mod:`mmseg_gearnn.distortions`, the
statistics of every copy are computed, and the classifier is fitted on them
(full-batch L-BFGS on the cross-entropy, L2 on the weights). Everything is
deterministic by ``seed``.
"""

import copy
import json
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS

from ..datasets import ProceduralStreetDataset
from ..distortions import CLEAN, DistortionSpace, build_space, distort
from ..models.estimators import DistortionEstimator
from ..models.estimators.features import batch_features, check_image
from ..utils.io import atomic_write

ImagesSource = Union[dict, Sequence[np.ndarray], Any]


def _log(msg: str) -> None:
    print_log(f'[estimator] {msg}', logger='current')


# -- clean images -----------------------------------------------------------
def _dataset_class(dataset_cfg: dict):
    t = dataset_cfg.get('type')
    return DATASETS.get(t) if isinstance(t, str) else t


def raw_image_dataset(dataset_cfg: dict) -> dict:
    """A copy of a dataset config whose items are the clean images.

    Wrappers that hold one ``dataset`` (``DistortionSweepDataset``,
    ``RepeatDataset``, ...) are replaced by the dataset they wrap;
    ``ConcatDataset`` keeps its parts, each rewritten. The pipeline of a
    :class:`ProceduralStreetDataset` (which hands over loaded images)
    becomes ``[]``; any other dataset's becomes
    ``[LoadCheckedImageFromFile]`` plus the fixed ``Resize`` steps its
    pipeline runs before distorting. So no distortion, crop or random
    resize of a training pipeline reaches the images, and a test pipeline's
    resolution does.

    Args:
        dataset_cfg (dict): e.g. ``cfg.train_dataloader.dataset``.

    Returns:
        dict: the rewritten config (the input is not modified).
    """
    cfg = copy.deepcopy(dict(dataset_cfg))
    if 'datasets' in cfg:
        cfg['datasets'] = [raw_image_dataset(d) for d in cfg['datasets']]
        return cfg
    if isinstance(cfg.get('dataset'), dict):
        return raw_image_dataset(cfg['dataset'])
    cls = _dataset_class(cfg)
    if cls is None:
        raise KeyError(
            f'dataset type {cfg.get("type")!r} is not registered in '
            'mmseg.registry.DATASETS (import its package first)'
        )
    if isinstance(cls, type) and issubclass(cls, ProceduralStreetDataset):
        cfg['pipeline'] = []
    else:
        cfg['pipeline'] = [dict(type='LoadCheckedImageFromFile')] + (
            _resizes_before_distortion(cfg.get('pipeline') or [])
        )
    return cfg


# Transforms that distort (or pair a distorted copy); what follows them never
# reaches the estimator's images.
_DISTORTING = (
    'FixedDistortion',
    'RandomDistortion',
    'RequestedDistortion',
    'PairedDistortion',
    'CompoundDistortion',
)


def _resizes_before_distortion(pipeline: Sequence[dict]) -> List[dict]:
    """The fixed ``Resize`` steps that run before the first distortion of
    a pipeline: a test pipeline that resizes frames before distorting them
    (the CamVid configs) shows the estimator the same scale."""
    kept = []
    for step in pipeline:
        kind = step.get('type') if isinstance(step, dict) else None
        if kind in _DISTORTING:
            break
        if kind == 'Resize':
            kept.append(copy.deepcopy(dict(step)))
    return kept


def _item_image(item: Any, index: int) -> np.ndarray:
    if isinstance(item, dict):
        distortion = item.get('distortion')
        if distortion and distortion.get('type') not in (None, CLEAN):
            raise ValueError(
                f'dataset item {index} is already distorted ({distortion}); '
                'build the dataset with raw_image_dataset(cfg) so that its '
                'pipeline only loads images'
            )
        if 'img' not in item:
            raise KeyError(
                f'dataset item {index} has no "img" (keys: {sorted(item)}); '
                "its pipeline must end with the loaded image in 'img'"
            )
        item = item['img']
    check_image(item, f'dataset image {index}')
    return item


def clean_images(
    images_source: ImagesSource, num_images: int, seed: int = 0
) -> List[np.ndarray]:
    """``num_images`` distinct clean images drawn by ``seed``.

    Args:
        images_source: a dataset config (rewritten by
            :func:`raw_image_dataset`, then built through mmseg's
            ``DATASETS``), a built dataset whose items are images or dicts
            with ``img`` (uint8 HxWx3 BGR), or a sequence of such images.
        num_images (int): how many to draw (without replacement).
        seed (int): which ones.

    Returns:
        list[np.ndarray]: uint8 HxWx3 BGR images.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int):
        raise TypeError(f'num_images must be an int, got {num_images!r}')
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    source = images_source
    if isinstance(source, dict):
        # The pipeline's transform names resolve in mmseg's registries.
        with DefaultScope.overwrite_default_scope('mmseg'):
            source = DATASETS.build(raw_image_dataset(source))
    if not hasattr(source, '__len__') or not hasattr(source, '__getitem__'):
        raise TypeError(
            'images_source must be a dataset config, a dataset or a '
            f'sequence of images, got {type(images_source).__name__}'
        )
    if len(source) < num_images:
        raise ValueError(
            f'asked for {num_images} clean images but the source holds '
            f'only {len(source)}'
        )
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(source), size=num_images, replace=False)
    return [_item_image(source[int(i)], int(i)) for i in picks]


# -- distorted copies and their features ------------------------------------
def distorted_features(
    space: Union[dict, DistortionSpace],
    images: Sequence[np.ndarray],
    seed: int = 0,
    max_side: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Features of every image under every gear of ``space``.

    Image ``i`` under gear ``g`` draws its noise (if any) from
    ``numpy.random.default_rng((seed, i, g))``.

    Returns:
        tuple[np.ndarray, np.ndarray]: (N * num_gears, D) float32
        features and the (N * num_gears,) int64 gear of each row.
    """
    space = build_space(space)
    copies, gears = [], []
    for i, img in enumerate(images):
        check_image(img, f'image {i}')
        for gear, dtype, level in space.gears():
            if dtype == CLEAN:
                copies.append(img)
            else:
                rng = np.random.default_rng((seed, i, gear))
                copies.append(distort(img, dtype, level, rng))
            gears.append(gear)
    return batch_features(copies, max_side), np.asarray(gears, np.int64)


# -- fitting ------------------------------------------------------------------
def fit_estimator(
    estimator: DistortionEstimator,
    features: Union[np.ndarray, torch.Tensor],
    gears: Union[np.ndarray, torch.Tensor],
    seed: int = 0,
    weight_decay: float = 1e-3,
    max_iter: int = 300,
) -> Dict[str, float]:
    """Fit the estimator's standardisation and classifier, in place.

    Full-batch L-BFGS (strong Wolfe line search) on the mean cross-entropy
    plus ``weight_decay`` times the squared weights (not biases); the
    classifier is re-initialised from ``seed`` first, so the result depends
    only on the data and ``seed``.

    Args:
        estimator (DistortionEstimator): the model to fit (on the CPU).
        features: (N, D) raw features.
        gears: (N,) gear ids; every gear of the space must occur.
        seed (int): initialisation seed.
        weight_decay (float): L2 coefficient.
        max_iter (int): L-BFGS iterations.

    Returns:
        dict: ``loss`` and ``train_accuracy`` after fitting.
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(gears), dtype=torch.int64)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            'features must be (N, D) and gears (N,), got '
            f'{tuple(x.shape)} and {tuple(y.shape)}'
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError('features hold NaN or infinite values')
    missing = sorted(set(range(estimator.num_gears)) - set(y.tolist()))
    if missing:
        raise ValueError(
            f'no training example of gears {missing}: every gear of the '
            'space needs examples'
        )
    if not weight_decay >= 0:
        raise ValueError(f'weight_decay must be >= 0, got {weight_decay}')
    estimator.cpu()
    std = x.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    estimator.set_standardization(x.mean(dim=0), std)
    weights = [
        p for n, p in estimator.classifier.named_parameters() if 'weight' in n
    ]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in estimator.classifier:
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()
    optimizer = torch.optim.LBFGS(
        estimator.classifier.parameters(),
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn='strong_wolfe',
    )

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(estimator(x), y)
        loss = loss + weight_decay * sum((w * w).sum() for w in weights)
        loss.backward()
        return loss

    estimator.train()
    optimizer.step(closure)
    estimator.eval()
    estimator.mark_fitted()
    with torch.no_grad():
        logits = estimator(x)
        loss = float(torch.nn.functional.cross_entropy(logits, y))
        accuracy = float((logits.argmax(dim=1) == y).float().mean())
    return dict(loss=loss, train_accuracy=accuracy)


def train_estimator(
    space: Union[dict, DistortionSpace],
    images_source: ImagesSource,
    num_per_gear: int = 100,
    seed: int = 0,
    hidden_channels: int = 32,
    max_side: int = 256,
    weight_decay: float = 1e-3,
    max_iter: int = 300,
) -> DistortionEstimator:
    """Train a :class:`DistortionEstimator` for ``space``.

    Draws ``num_per_gear`` clean images from ``images_source`` (see
    :func:`clean_images`), distorts each with every gear (so each gear,
    clean included, has ``num_per_gear`` examples of the same scenes),
    computes the features and fits the classifier (:func:`fit_estimator`).

    Args:
        space (dict | DistortionSpace): the distortion space.
        images_source: a dataset config, a dataset, or a sequence of uint8
            HxWx3 BGR images.
        num_per_gear (int): clean images drawn, i.e. examples per gear.
        seed (int): draws the images, the noise and the initialisation.
        hidden_channels (int): MLP width (0: logistic regression).
        max_side (int): feature crop (see :class:`DistortionEstimator`).
        weight_decay (float): L2 coefficient.
        max_iter (int): L-BFGS iterations.

    Returns:
        DistortionEstimator: fitted, in eval mode, on the CPU.
    """
    space = build_space(space)
    estimator = DistortionEstimator(
        space, hidden_channels=hidden_channels, max_side=max_side
    )
    images = clean_images(images_source, num_per_gear, seed)
    features, gears = distorted_features(space, images, seed, max_side)
    stats = fit_estimator(
        estimator,
        features,
        gears,
        seed=seed,
        weight_decay=weight_decay,
        max_iter=max_iter,
    )
    _log(
        f'fitted on {len(images)} images x {space.num_gears} gears: '
        f'loss {stats["loss"]:.4f}, train accuracy '
        f'{stats["train_accuracy"]:.4f}'
    )
    return estimator


# -- evaluation ---------------------------------------------------------------
def _level_index(space: DistortionSpace, gear: int) -> Tuple[str, int]:
    """(type, level index) with clean at index 0 and a type's levels at
    1..L, mild to harsh."""
    dtype, level = space.level_of(gear)
    if dtype == CLEAN:
        return CLEAN, 0
    return dtype, space.levels(dtype).index(level) + 1


def within_one_level(space: DistortionSpace, pred: int, true: int) -> bool:
    """Whether ``pred`` is ``true``'s gear or a neighbouring level of the
    same type; clean neighbours the mildest level of every type."""
    pt, pi = _level_index(space, pred)
    tt, ti = _level_index(space, true)
    if abs(pi - ti) > 1:
        return False
    return pt == tt or CLEAN in (pt, tt)


def evaluate_estimator(
    estimator: DistortionEstimator,
    images_source: ImagesSource,
    num_images: int,
    seed: int = 1,
) -> dict:
    """Accuracy on ``num_images`` clean images under every gear.

    Returns:
        dict: ``exact`` (overall), ``per_type`` (for ``clean`` and each
        type: ``exact``, ``within_one`` (see :func:`within_one_level`),
        ``type`` (the type is right) and ``count``), ``confusion``
        (rows: true gear, columns: predicted gear) and ``num_images``.
    """
    estimator.check_fitted()
    space = estimator.space
    images = clean_images(images_source, num_images, seed)
    features, gears = distorted_features(
        space, images, seed, estimator.max_side
    )
    with torch.no_grad():
        device = estimator.feature_mean.device
        logits = estimator(torch.from_numpy(features).to(device))
        pred = logits.argmax(dim=1).cpu().numpy()
    confusion = np.zeros((space.num_gears, space.num_gears), np.int64)
    np.add.at(confusion, (gears, pred), 1)
    per_type = {}
    for dtype in [CLEAN] + space.types:
        rows = [
            i
            for i, g in enumerate(gears)
            if space.level_of(int(g))[0] == dtype
        ]
        p, t = pred[rows], gears[rows]
        per_type[dtype] = dict(
            exact=float(np.mean(p == t)),
            within_one=float(
                np.mean(
                    [
                        within_one_level(space, int(a), int(b))
                        for a, b in zip(p, t)
                    ]
                )
            ),
            type=float(
                np.mean(
                    [
                        space.level_of(int(a))[0] == space.level_of(int(b))[0]
                        for a, b in zip(p, t)
                    ]
                )
            ),
            count=len(rows),
        )
    return dict(
        exact=float(np.mean(pred == gears)),
        per_type=per_type,
        confusion=confusion.tolist(),
        num_images=num_images,
    )


def format_estimator_report(report: dict) -> str:
    """A markdown table of :func:`evaluate_estimator`'s per-type results."""
    lines = [
        '| type | exact gear | within one level | right type | samples |',
        '|---|---|---|---|---|',
    ]
    for dtype, r in report['per_type'].items():
        lines.append(
            f'| {dtype} | {r["exact"]:.3f} | {r["within_one"]:.3f} | '
            f'{r["type"]:.3f} | {r["count"]} |'
        )
    lines.append(
        f'| **all** | {report["exact"]:.3f} | | | '
        f'{sum(r["count"] for r in report["per_type"].values())} |'
    )
    return '\n'.join(lines)


def train_estimator_from_config(
    cfg,
    out: str,
    num_images: int = 100,
    seed: int = 0,
    val_num_images: int = 0,
    hidden_channels: int = 32,
    max_side: int = 256,
) -> Tuple[DistortionEstimator, Optional[dict]]:
    """Train on a config's train dataset for its ``distortion_space``,
    save to ``out``, optionally evaluate on its val dataset.

    The clean images come from ``cfg.train_dataloader.dataset`` through
    :func:`raw_image_dataset`; the evaluation (``val_num_images`` > 0) uses
    ``cfg.val_dataloader.dataset`` the same way, and its report goes to
    ``out`` with the extension ``.json``.

    Returns:
        tuple: the estimator and the evaluation report (None if skipped).
    """
    if cfg.get('distortion_space') is None:
        raise KeyError('the config has no distortion_space')
    space = build_space(cfg.distortion_space)
    estimator = train_estimator(
        space,
        raw_image_dataset(cfg.train_dataloader.dataset),
        num_per_gear=num_images,
        seed=seed,
        hidden_channels=hidden_channels,
        max_side=max_side,
    )
    estimator.save(out)
    _log(f'saved {out}')
    report = None
    if val_num_images:
        if cfg.get('val_dataloader') is None:
            raise KeyError('the config has no val_dataloader to evaluate on')
        report = evaluate_estimator(
            estimator,
            raw_image_dataset(cfg.val_dataloader.dataset),
            val_num_images,
            seed=seed + 1,
        )
        report['distortion_space'] = space.to_dict()
        path = osp.splitext(out)[0] + '.json'
        atomic_write(path, json.dumps(report, indent=2))
        _log(
            f'held-out accuracy on {val_num_images} val images x '
            f'{space.num_gears} gears (report: {path}):\n'
            + format_estimator_report(report)
        )
    return estimator, report
