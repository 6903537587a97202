"""Distorted batches for the scoring methods.

Scoring methods read batches from a :class:`BatchSource`: a fixed
(type, level) stream for the weight-change fine-tunes, and a mixed stream
over several levels for the gradient statistics.
:class:`DataloaderBatchSource` builds both from a dataloader config (e.g. a
config's ``train_dataloader``) by putting a distortion transform of the
distortion space into its dataset pipeline.
"""

import copy
import itertools
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from mmengine.runner import Runner

from ..distortions import CLEAN, DistortionSpace, build_space

Level = Tuple[str, Union[int, float]]

#: Transforms of this package that distort images; a rewritten pipeline
#: holds exactly one of them.
DISTORTION_TRANSFORMS = (
    'FixedDistortion',
    'RandomDistortion',
    'RequestedDistortion',
)


def transform_type_name(transform_cfg: dict) -> str:
    """The registered name of a transform config's ``type`` (a string or a
    class; a dotted scope prefix dropped)."""
    t = transform_cfg.get('type')
    name = t if isinstance(t, str) else getattr(t, '__name__', str(t))
    return name.rsplit('.', 1)[-1]


def _pipeline_holders(dataset_cfg: dict) -> List[dict]:
    """The dataset dicts that own a ``pipeline``, wrappers looked through
    (``dataset=`` of RepeatDataset and the like, ``datasets=`` of
    ConcatDataset)."""
    holders = []
    if 'pipeline' in dataset_cfg:
        holders.append(dataset_cfg)
    inner = dataset_cfg.get('dataset')
    if isinstance(inner, dict):
        holders.extend(_pipeline_holders(inner))
    for inner in dataset_cfg.get('datasets', None) or []:
        if isinstance(inner, dict):
            holders.extend(_pipeline_holders(inner))
    return holders


def replace_distortion(pipeline: Sequence[dict], transform: dict) -> list:
    """A copy of ``pipeline`` whose only distortion transform is
    ``transform``.

    Every distortion transform of this package is removed; ``transform``
    goes where the first one was, else just before ``PackSegInputs``, else
    at the end.

    Args:
        pipeline (Sequence[dict]): transform configs.
        transform (dict): the distortion transform config to put in.

    Returns:
        list[dict]: the new pipeline (the input is not modified).
    """
    out, position = [], None
    for step in pipeline:
        if transform_type_name(step) in DISTORTION_TRANSFORMS:
            if position is None:
                position = len(out)
            continue
        out.append(copy.deepcopy(step))
    if position is None:
        names = [transform_type_name(step) for step in out]
        position = (
            names.index('PackSegInputs')
            if 'PackSegInputs' in names
            else len(out)
        )
    out.insert(position, copy.deepcopy(transform))
    return out


def with_distortion(dataloader_cfg: dict, transform: dict) -> dict:
    """A copy of a dataloader config whose dataset pipeline(s) apply
    ``transform`` as their only distortion (see
    :func:`replace_distortion`).

    Raises:
        ValueError: if no dataset in the config has a ``pipeline``.
    """
    cfg = copy.deepcopy(dict(dataloader_cfg))
    if not isinstance(cfg.get('dataset'), dict):
        raise ValueError(
            'the dataloader config has no dataset dict to put a '
            f'distortion into; its keys are {sorted(cfg)}'
        )
    holders = _pipeline_holders(cfg['dataset'])
    if not holders:
        raise ValueError(
            'no dataset in the dataloader config has a pipeline, so no '
            'distortion transform can be added to it'
        )
    for holder in holders:
        holder['pipeline'] = replace_distortion(holder['pipeline'], transform)
    return cfg


def fixed_distortion_cfg(
    space: DistortionSpace, distortion_type: str, level=None
) -> dict:
    """Config of a ``FixedDistortion`` of ``space``."""
    return dict(
        type='FixedDistortion',
        space=space.to_dict(),
        distortion_type=distortion_type,
        level=level,
    )


def random_distortion_cfg(
    space: DistortionSpace, types: Optional[Sequence[str]] = None
) -> dict:
    """Config of a ``RandomDistortion`` of ``space`` that never leaves an
    image clean."""
    return dict(
        type='RandomDistortion',
        space=space.to_dict(),
        clean_prob=0.0,
        types=None if types is None else list(types),
    )


def parse_levels(
    space: DistortionSpace, items: Optional[Iterable] = None
) -> List[Level]:
    """The (type, level) pairs that ``items`` name, in gear order.

    Args:
        space (DistortionSpace): the distortion space.
        items (Iterable, optional): each a gear id (``3`` or ``'3'``), a
            ``'type:level'`` string (``'jpeg:10'``), a type name (all its
            levels) or a ``(type, level)`` pair. None: every distorted gear.

    Returns:
        list[tuple]: distinct (type, level) pairs, sorted by gear id. The
        clean gear is never part of it.

    Raises:
        ValueError: for an item outside the space, the clean gear, or an
            empty result.
    """
    space = build_space(space)
    if items is None:
        gears = list(range(1, space.num_gears))
    else:
        gears = []
        for item in items:
            gears.extend(_gears_of(space, item))
    if not gears:
        raise ValueError(
            'no distortion level to score: the level subset is empty'
        )
    return [space.level_of(g) for g in sorted(set(gears))]


def _gears_of(space: DistortionSpace, item) -> List[int]:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        gears = [space.gear_id(item[0], item[1])]
    elif isinstance(item, int) and not isinstance(item, bool):
        space.level_of(item)
        gears = [item]
    elif isinstance(item, str) and item.strip().lstrip('-').isdigit():
        gear = int(item)
        space.level_of(gear)
        gears = [gear]
    elif isinstance(item, str) and ':' in item:
        dtype, level = item.split(':', 1)
        gears = [space.gear_id(dtype.strip(), float(level))]
    elif isinstance(item, str):
        gears = [space.gear_id(item, lv) for lv in space.levels(item)]
    else:
        raise ValueError(f'cannot read a distortion level from {item!r}')
    if CLEAN in [space.level_of(g)[0] for g in gears]:
        raise ValueError(
            f'{item!r} names the clean gear 0; only distorted levels '
            'can be scored'
        )
    return gears


def cycle_batches(loader: Iterable, what: str = 'dataloader') -> Iterator:
    """Batches of ``loader`` forever, restarting it when it ends.

    Raises:
        RuntimeError: (when iterated) if ``loader`` yields nothing.
    """
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise RuntimeError(f'the {what} yields no batches')


class BatchSource:
    """Where the scoring methods read distorted batches.

    Subclasses give :meth:`level_batches`; the default
    :meth:`mixed_batches` takes the given levels in turn.
    """

    def level_batches(self, distortion_type: str, level) -> Iterator[dict]:
        """An endless iterator of batches distorted at one level."""
        raise NotImplementedError

    def mixed_batches(self, levels: Sequence[Level]) -> Iterator[dict]:
        """An endless iterator of batches, each distorted at one of
        ``levels`` (round robin)."""
        streams = [self.level_batches(t, lv) for t, lv in levels]
        if not streams:
            raise ValueError('mixed_batches needs at least one level')
        for stream in itertools.cycle(streams):
            yield next(stream)


class DataloaderBatchSource(BatchSource):
    """Batches from a dataloader config with a distortion in its pipeline.

    Per level, the pipeline's distortion transform (any
    ``RandomDistortion`` / ``FixedDistortion`` / ``RequestedDistortion``)
    is replaced by ``FixedDistortion(space, type, level)``, or one is
    inserted before ``PackSegInputs``. For the mixed stream over every
    level of the space it is one ``RandomDistortion(space,
    clean_prob=0)``; over a subset, per-level streams in turn.

    Args:
        dataloader_cfg (dict): e.g. ``cfg.train_dataloader``.
        space (dict | DistortionSpace): the distortion space.
        seed (int, optional): seed of the samplers and workers.
    """

    def __init__(
        self, dataloader_cfg: dict, space, seed: Optional[int] = None
    ) -> None:
        self.dataloader_cfg = copy.deepcopy(dict(dataloader_cfg))
        self.space = build_space(space)
        self.seed = seed
        # Many short-lived loaders: workers that outlive one are waste.
        self.dataloader_cfg['persistent_workers'] = False

    def build_dataloader(self, transform: dict):
        """The dataloader with ``transform`` as its distortion."""
        cfg = with_distortion(self.dataloader_cfg, transform)
        return Runner.build_dataloader(cfg, seed=self.seed)

    def level_batches(self, distortion_type: str, level) -> Iterator[dict]:
        transform = fixed_distortion_cfg(self.space, distortion_type, level)
        return cycle_batches(
            self.build_dataloader(transform),
            f'dataloader at {distortion_type}={level}',
        )

    def mixed_batches(self, levels: Sequence[Level]) -> Iterator[dict]:
        gears = {self.space.gear_id(t, lv) for t, lv in levels}
        if gears == set(range(1, self.space.num_gears)):
            loader = self.build_dataloader(random_distortion_cfg(self.space))
            return cycle_batches(loader, 'randomly distorted dataloader')
        return super().mixed_batches(levels)
