"""A dataset wrapper that shows every sample at every distortion level."""

import copy
import logging
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset, force_full_init
from mmengine.logging import print_log
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import DATASETS

from ..distortions import (
    CLEAN,
    DistortionSpace,
    RequestedDistortion,
    build_space,
    compound_record,
)


@DATASETS.register_module()
class DistortionSweepDataset:
    """Every sample of a dataset under every (type, level) of a space.

    With ``N`` samples and the entries ``[clean] + space's (type, level)
    pairs`` (gear order), item ``i`` is sample ``i % N`` under entry
    ``i // N``: first all samples clean, then all under gear 1, and so on.
    The wrapper writes ``distortion_request = dict(type, level)`` into the
    wrapped dataset's data info and runs the wrapped pipeline, whose
    :class:`RequestedDistortion` applies it. So one ``runner.test()``
    evaluates every level; a metric can group results by
    ``data_sample.metainfo['distortion']``.

    Example:
        >>> test_dataloader = dict(dataset=dict(
        ...     type='DistortionSweepDataset',
        ...     space=distortion_space,
        ...     dataset=dict(type='CamVidDataset', ..., pipeline=[
        ...         dict(type='LoadCheckedImageFromFile'),
        ...         dict(type='RequestedDistortion', space=distortion_space),
        ...         dict(type='LoadCheckedAnnotations'),
        ...         dict(type='PackSegInputs', meta_keys=(..., 'distortion'))
        ...     ])))

    Compound distortions (``compounds``) come after the space's entries,
    each requested as ``dict(components=[dict(type, level), ...])``, which
    :class:`RequestedDistortion` applies in order and records as
    :func:`~mmseg_gearnn.distortions.space.compound_record` does.

    Args:
        dataset (dict | BaseDataset): The dataset (or its config) to sweep;
            its pipeline must contain a :class:`RequestedDistortion`.
        space (dict | DistortionSpace, optional): The distortion space to
            sweep. Defaults to None: the space of the pipeline's
            :class:`RequestedDistortion`. If given, every (type, level) must
            have the same gear id in both.
        include_clean (bool): Sweep the clean gear too. Defaults to True.
        compounds (Sequence, optional): compound distortions to sweep too,
            each a list of ``dict(type, level)`` or ``(type, level)``
            applied in order. Defaults to None.
        include_levels (bool): Sweep the space's (type, level) entries.
            False sweeps only the clean gear (with ``include_clean``) and
            the compounds. Defaults to True.
        lazy_init (bool): Defer initialising the wrapped dataset.
            Defaults to False.
        seed (int, optional): If given, item ``i``'s random distortions
            (noise, the standard corruptions) are seeded by ``(seed, i %
            N)``: one sample draws the same noise under every entry, in any
            run, whatever the workers and the order. Defaults to None: drawn
            from the global random state.

    Raises:
        ValueError: The wrapped pipeline has no RequestedDistortion, or the
            sweep's space disagrees with it.
    """

    def __init__(
        self,
        dataset: Union[dict, BaseDataset],
        space: Optional[Union[dict, DistortionSpace]] = None,
        include_clean: bool = True,
        compounds: Optional[Sequence] = None,
        include_levels: bool = True,
        lazy_init: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        if not isinstance(dataset, BaseDataset):
            raise TypeError(
                'dataset must be a dataset config or a BaseDataset, got '
                f'{type(dataset).__name__}'
            )
        self.dataset = dataset
        requested = self._find_requested_distortion(dataset)
        self.space = requested.space if space is None else build_space(space)
        self.include_clean = include_clean
        self.include_levels = include_levels
        if seed is not None and (int(seed) != seed or not 0 <= seed < 2**32):
            raise ValueError(
                f'seed must be an integer in [0, 2**32), got {seed!r}'
            )
        self.seed = seed
        gears = self.space.gears()
        self.entries: List[Tuple[Optional[int], str, Optional[float]]] = (
            gears[:1] if include_clean else []
        ) + (gears[1:] if include_levels else [])
        self._check_same_gears(requested.space)
        # Compound entries: gear None, the record's joined type and level.
        self.compounds = [compound_record(c) for c in compounds or []]
        self.entries += [(None, c['type'], c['level']) for c in self.compounds]
        if not self.entries:
            raise ValueError(
                'the sweep is empty: include the clean gear, the levels or '
                'some compounds'
            )
        self._warn_if_distortion_not_packed(dataset)
        self._metainfo = dataset.metainfo
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @staticmethod
    def _find_requested_distortion(
        dataset: BaseDataset,
    ) -> RequestedDistortion:
        transforms = getattr(dataset.pipeline, 'transforms', [])
        found = [t for t in transforms if isinstance(t, RequestedDistortion)]
        if not found:
            names = [type(t).__name__ for t in transforms]
            raise ValueError(
                'DistortionSweepDataset needs a RequestedDistortion '
                "transform in the wrapped dataset's pipeline to apply the "
                f'requested distortions, but its pipeline is {names}; add '
                "dict(type='RequestedDistortion', space=...) after image "
                'loading'
            )
        if len(found) > 1:
            raise ValueError(
                "the wrapped dataset's pipeline has "
                f'{len(found)} RequestedDistortion transforms; it needs '
                'exactly one'
            )
        return found[0]

    def _check_same_gears(self, pipeline_space: DistortionSpace) -> None:
        for gear, dtype, level in self.entries:
            try:
                other = pipeline_space.gear_id(dtype, level)
            except ValueError as e:
                raise ValueError(
                    f'the sweep requests ({dtype}, {level}), which the '
                    "RequestedDistortion of the wrapped pipeline can't "
                    f'apply: {e}'
                ) from e
            if other != gear:
                raise ValueError(
                    f'({dtype}, {level}) is gear {gear} in the sweep but '
                    f'gear {other} in the wrapped pipeline; give both the '
                    'same distortion space'
                )

    @staticmethod
    def _warn_if_distortion_not_packed(dataset: BaseDataset) -> None:
        for t in getattr(dataset.pipeline, 'transforms', []):
            if isinstance(t, PackSegInputs) and 'distortion' not in (
                t.meta_keys
            ):
                print_log(
                    "PackSegInputs of the swept dataset lacks 'distortion' "
                    'in meta_keys: results cannot be told apart by '
                    'distortion',
                    logger='current',
                    level=logging.WARNING,
                )

    @property
    def metainfo(self) -> dict:
        """The wrapped dataset's meta information."""
        return copy.deepcopy(self._metainfo)

    def full_init(self) -> None:
        """Initialise the wrapped dataset."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        self._ori_len = len(self.dataset)
        self._fully_initialized = True

    @force_full_init
    def __len__(self) -> int:
        return self._ori_len * len(self.entries)

    @force_full_init
    def distortion_of(
        self, idx: int
    ) -> Tuple[int, Optional[int], str, Optional[float]]:
        """(sample index, gear, type, level) of item ``idx``; a compound
        has gear None and its record's joined type and level.

        Args:
            idx (int): Index into the sweep (negative counts from the end).

        Returns:
            tuple: Sample index in the wrapped dataset, gear id, type and
            level (None for clean).
        """
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f'index {idx} is outside a sweep of {n} items')
        idx %= n
        gear, dtype, level = self.entries[idx // self._ori_len]
        return idx % self._ori_len, gear, dtype, level

    @force_full_init
    def get_data_info(self, idx: int) -> dict:
        """The wrapped data info of item ``idx`` with its request added.

        Args:
            idx (int): Index into the sweep.

        Returns:
            dict: Data info with ``distortion_request = dict(type, level)``
            (and ``seed`` if the sweep has one).
        """
        sample, gear, dtype, level = self.distortion_of(idx)
        info = self.dataset.get_data_info(sample)
        if gear is None:
            entry = (idx % len(self)) // self._ori_len
            compound = self.compounds[
                entry - (len(self.entries) - len(self.compounds))
            ]
            request = dict(components=compound['components'])
        elif dtype == CLEAN:
            request = dict(type=CLEAN)
        else:
            request = dict(type=dtype, level=level)
        if self.seed is not None:
            sequence = np.random.SeedSequence((self.seed, sample))
            request['seed'] = int(sequence.generate_state(1)[0])
        info['distortion_request'] = request
        return info

    def __getitem__(self, idx: int) -> dict:
        if not self._fully_initialized:
            print_log(
                'Please call `full_init` method manually to accelerate the '
                'speed.',
                logger='current',
                level=logging.WARNING,
            )
            self.full_init()
        data = self.dataset.pipeline(self.get_data_info(idx))
        if data is None:
            sample, gear, dtype, level = self.distortion_of(idx)
            raise RuntimeError(
                f'the pipeline returned None for sample {sample} under '
                f'({dtype}, {level}) (gear {gear}); a sweep cannot skip '
                'samples'
            )
        return data

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(dataset='
            f'{type(self.dataset).__name__}, space={self.space!r}, '
            f'include_clean={self.include_clean}, '
            f'include_levels={self.include_levels}, '
            f'compounds={len(self.compounds)}, seed={self.seed})'
        )
