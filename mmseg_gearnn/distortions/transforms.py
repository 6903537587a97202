"""Registered transforms that distort an image and record the distortion.

Each writes ``results['distortion'] = dict(type, level, gear)``; add
``'distortion'`` to ``PackSegInputs``'s ``meta_keys`` to carry it into
``data_sample.metainfo``. Labels are never touched.

``gear`` is the gear id in the transform's own distortion space. A model
checks it against its gear table only for a level that table lists, and
routes any other level by (type, level); a transform built on another space
whose levels may also be in the model's table (a measurement space) should
be given ``record_gear=False``, so that its records carry no gear of a
foreign table. :class:`CompoundDistortion` applies several distortions and
records them all (see :func:`~mmseg_gearnn.distortions.space.compound_record`).

A random kernel (noise, the standard corruptions) draws its seed from numpy's
global random state, or takes the ``seed`` of a request (see
:class:`RequestedDistortion`), so the same request gives the same image.
"""

from typing import Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmseg.registry import TRANSFORMS

from .functional import KERNELS, check_level, distort
from .space import CLEAN, build_space, compound_record


class _DistortionTransform(BaseTransform):
    """Shared part: the distortion space and applying one distortion."""

    def __init__(self, space, record_gear: bool = True) -> None:
        self.space = build_space(space)
        self.record_gear = record_gear

    @cache_randomness
    def _noise_seed(self) -> int:
        return int(np.random.randint(0, 2**31 - 1))

    def _rng(self, dtype: str, seed: Optional[int]):
        """The generator of a random kernel (None for the others): seeded
        with ``seed``, else with a draw from the global random state."""
        if not KERNELS[dtype].random:
            return None
        return np.random.default_rng(
            self._noise_seed() if seed is None else seed
        )

    def _apply(
        self,
        results: dict,
        distortion_type: str,
        level,
        seed: Optional[int] = None,
    ) -> dict:
        record = self.space.record(distortion_type, level)
        if distortion_type != CLEAN:
            rng = self._rng(distortion_type, seed)
            results['img'] = distort(
                results['img'], distortion_type, record['level'], rng
            )
        if not self.record_gear:
            record['gear'] = None
        results['distortion'] = record
        return results

    def _apply_compound(
        self, results: dict, components, seed: Optional[int] = None
    ) -> dict:
        """Applies every component in order, each at its level as given
        (a compound is no gear of the space, so its levels are not
        resolved against it); component ``i`` of a seeded request is
        seeded with ``(seed, i)``."""
        record = compound_record(components)
        img = results['img']
        for i, component in enumerate(record['components']):
            dtype = component['type']
            rng = self._rng(dtype, None if seed is None else (seed, i))
            img = distort(img, dtype, component['level'], rng)
        results['img'] = img
        results['distortion'] = record
        return results


@TRANSFORMS.register_module()
class FixedDistortion(_DistortionTransform):
    """Distort every image with one (type, level) of the distortion space.

    Required Keys:

    - img

    Modified Keys:

    - img

    Added Keys:

    - distortion (dict): ``type``, ``level`` and ``gear`` id.

    Args:
        space (dict | DistortionSpace): the distortion space.
        distortion_type (str): a type of the space, or ``'clean'``.
        level (float, optional): a level of that type (ignored for clean).
        record_gear (bool): record the gear id of ``space``; False records
            ``gear=None`` (see the module docstring).
    """

    def __init__(
        self, space, distortion_type: str, level=None, record_gear=True
    ) -> None:
        super().__init__(space, record_gear)
        # Validates now, not at the first image.
        record = self.space.record(distortion_type, level)
        self.distortion_type = distortion_type
        self.level = record['level']

    def transform(self, results: dict) -> dict:
        return self._apply(results, self.distortion_type, self.level)

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(space={self.space!r}, '
            f'distortion_type={self.distortion_type!r}, '
            f'level={self.level!r})'
        )


@TRANSFORMS.register_module()
class RandomDistortion(_DistortionTransform):
    """Distort each image with a random (type, level) of the space.

    With probability ``clean_prob`` the image stays clean (gear 0);
    otherwise a type is drawn uniformly from ``types``, then a level
    uniformly from that type's levels.

    Required Keys:

    - img

    Modified Keys:

    - img

    Added Keys:

    - distortion (dict): ``type``, ``level`` and ``gear`` id.

    Args:
        space (dict | DistortionSpace): the distortion space.
        clean_prob (float): probability of leaving the image clean.
        types (Sequence[str], optional): the types to draw from; all the
            space's types if None.
        draw_every (int): draw a new distortion every ``draw_every`` images
            and reuse it in between. Set it to the batch size to give each
            batch a single gear (a dataloader worker builds whole batches),
            so that a gear's BN statistics see the whole batch.
        record_gear (bool): record the gear id of ``space``; False records
            ``gear=None``, so that a model whose gear table lists fewer
            levels (e.g. one gear per type, ``snap='nearest'``) routes each
            sample by its (type, level).
    """

    def __init__(
        self,
        space,
        clean_prob: float = 0.1,
        types: Optional[Sequence[str]] = None,
        draw_every: int = 1,
        record_gear: bool = True,
    ) -> None:
        super().__init__(space, record_gear)
        if int(draw_every) != draw_every or draw_every < 1:
            raise ValueError(
                f'draw_every must be a positive integer, got {draw_every}'
            )
        self.draw_every = int(draw_every)
        self._calls = 0
        self._current = None
        if not 0 <= clean_prob <= 1:
            raise ValueError(f'clean_prob must be in [0, 1], got {clean_prob}')
        self.clean_prob = clean_prob
        if types is not None:
            types = list(types)
            if not types:
                raise ValueError('types is empty: give None for all types')
            for t in types:
                self.space.levels(t)  # raises for a type not in the space
        self.types = types

    @cache_randomness
    def _draw(self):
        if np.random.rand() < self.clean_prob:
            return CLEAN, None
        types = self.types or self.space.types
        dtype = types[np.random.randint(len(types))]
        levels = self.space.levels(dtype)
        return dtype, levels[np.random.randint(len(levels))]

    def transform(self, results: dict) -> dict:
        if self._calls % self.draw_every == 0:
            self._current = self._draw()
        self._calls += 1
        dtype, level = self._current
        return self._apply(results, dtype, level)

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(space={self.space!r}, '
            f'clean_prob={self.clean_prob}, types={self.types!r}, '
            f'draw_every={self.draw_every})'
        )


@TRANSFORMS.register_module()
class RequestedDistortion(_DistortionTransform):
    """Apply the distortion that the dataset asks for in
    ``results['distortion_request'] = dict(type, level)`` (clean if absent).

    Used by :class:`DistortionSweepDataset` to evaluate every (type, level)
    with one pipeline. A request ``dict(components=[dict(type, level),
    ...])`` applies a compound distortion, as :class:`CompoundDistortion`
    does. A request's optional ``seed`` (an integer) seeds its random
    kernels, so that the image depends on the request alone, not on which
    worker or in which order it is made.

    Required Keys:

    - img
    - distortion_request (optional)

    Modified Keys:

    - img

    Added Keys:

    - distortion (dict): ``type``, ``level`` and ``gear`` id.

    Args:
        space (dict | DistortionSpace): the distortion space.
        record_gear (bool): record the gear id of ``space``; False records
            ``gear=None`` (see the module docstring).
    """

    def __init__(self, space, record_gear: bool = True) -> None:
        super().__init__(space, record_gear)

    def transform(self, results: dict) -> dict:
        request = results.pop('distortion_request', None) or dict(type=CLEAN)
        seed = request.get('seed')
        if request.get('components'):
            return self._apply_compound(results, request['components'], seed)
        return self._apply(
            results, request['type'], request.get('level'), seed
        )

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(space={self.space!r})'


@TRANSFORMS.register_module()
class PairedDistortion(RandomDistortion):
    """Keep ``img`` clean and add a distorted copy of it, for stability
    training (:class:`~mmseg_gearnn.models.StabilitySegmentor`).

    The copy's (type, level) is drawn as in :class:`RandomDistortion` and
    made by the same kernels. ``img`` is left untouched, and so is
    ``distortion`` (which keeps describing ``img``); the copy and its record
    go to new keys. ``PackSegInputs`` packs only ``img``, so list
    ``'distorted_img'`` (and ``'paired_distortion'``) in its ``meta_keys``:
    the copy then travels, as the uint8 array, in ``data_sample.metainfo``
    and the segmentor normalises and pads it with its own data preprocessor,
    exactly as the clean image.

    Place it after every geometric and photometric transform, right before
    ``PackSegInputs``, so that the two copies differ only by the distortion.

    Required Keys:

    - img

    Added Keys:

    - distorted_img (np.ndarray): uint8, the shape of ``img``.
    - paired_distortion (dict): ``type``, ``level`` and ``gear`` id of the
      copy.

    Args:
        space (dict | DistortionSpace): the distortion space.
        clean_prob (float): probability that the copy stays clean (then it
            equals ``img`` and the stability term is zero for it).
        types (Sequence[str], optional): the types to draw from; all the
            space's types if None.
        draw_every (int): draw a new distortion every ``draw_every`` images.
    """

    def __init__(
        self,
        space,
        clean_prob: float = 0.0,
        types: Optional[Sequence[str]] = None,
        draw_every: int = 1,
    ) -> None:
        super().__init__(space, clean_prob, types, draw_every)

    def transform(self, results: dict) -> dict:
        paired = super().transform(dict(img=results['img']))
        copy = paired['img']
        if copy is results['img']:  # clean: never share the array
            copy = copy.copy()
        results['distorted_img'] = copy
        results['paired_distortion'] = paired['distortion']
        return results


@TRANSFORMS.register_module()
class CompoundDistortion(_DistortionTransform):
    """Distort every image with several distortions, one after the other
    (e.g. a dark frame that is then JPEG-compressed).

    Each component is applied at its level as given: a compound is no gear
    of any gear table, so no distortion space is involved; the model
    resolves each component's level against its own table when it routes
    (``GearNNSegmentor``'s ``compound_routing``).

    Required Keys:

    - img

    Modified Keys:

    - img

    Added Keys:

    - distortion (dict): ``components`` (``dict(type, level)`` in the order
      applied), ``type`` and ``level`` naming the compound (joined by
      ``'+'``) and ``gear=None``; see
      :func:`~mmseg_gearnn.distortions.space.compound_record`.

    A ``DistortionIoUMetric`` groups such samples by the compound's name
    when it is built without a space (with one, a name outside the space is
    an error).

    Args:
        components (Sequence): ``dict(type, level)`` or ``(type, level)``
            pairs, applied in this order.

    Example:
        >>> dict(type='CompoundDistortion',
        ...      components=[dict(type='brightness', level=0.1),
        ...                  dict(type='jpeg', level=5)])
    """

    def __init__(self, components: Sequence) -> None:
        # Validates now, not at the first image.
        self.components = compound_record(components)['components']
        for component in self.components:
            check_level(component['type'], component['level'])

    def transform(self, results: dict) -> dict:
        return self._apply_compound(results, self.components)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(components={self.components!r})'
