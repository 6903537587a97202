"""The distortion space: one gear table shared by every component.

Gear 0 is always the clean input; gears 1..N follow the (type, level) pairs
in the order the config lists them. Transforms, selection, gear training,
evaluation and routing all read this one table.

A gear's identity is its (type, level), not its id: a config dump that
sorts the types renumbers the gears. Every file that holds gears records
the table (:meth:`DistortionSpace.gear_table`) and is read through
:meth:`DistortionSpace.gear_map`, which matches gears by identity.
"""

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..utils.user_errors import did_you_mean
from .functional import KERNELS

CLEAN = 'clean'
CLEAN_GEAR = 0
# Joins the component types (and levels) of a compound distortion's name.
COMPOUND_SEPARATOR = '+'


def check_gear_id(gear, num_gears: int) -> None:
    """Raises unless ``gear`` is an int id of a table of ``num_gears``
    gears (the clean gear 0 included)."""
    if (
        isinstance(gear, bool)
        or not isinstance(gear, int)
        or not (0 <= gear < num_gears)
    ):
        raise ValueError(
            f'gear {gear!r} is outside the gear table: '
            f'valid gears are 0..{num_gears - 1}'
        )


class DistortionSpace:
    """Distortion types, their discrete levels, and (type, level) -> gear.

    Args:
        distortions (dict): maps a distortion type (a kernel name of
            :mod:`mmseg_gearnn.distortions.functional`) to its levels, listed
            from mild to harsh.
        snap (str): what to do with a level that is not in the table:
            ``'error'`` (default) raises, ``'nearest'`` takes the closest
            listed level of that type.

    Example:
        >>> space = DistortionSpace(dict(jpeg=[40, 10], brightness=[0.3]))
        >>> space.gear_id('jpeg', 10)
        2
        >>> space.level_of(3)
        ('brightness', 0.3)
    """

    def __init__(
        self,
        distortions: Dict[str, Sequence[Union[int, float]]],
        snap: str = 'error',
    ) -> None:
        if isinstance(distortions, DistortionSpace):
            distortions, snap = distortions.distortions, distortions.snap
        if not isinstance(distortions, dict) or not distortions:
            raise ValueError(
                'the distortion space is empty: give at least '
                'one type with levels, e.g. '
                'distortions=dict(jpeg=[40, 20, 10])'
            )
        if snap not in ('error', 'nearest'):
            raise ValueError(
                f"snap must be 'error' or 'nearest', got {snap!r}"
            )
        self.snap = snap
        self.distortions: Dict[str, List] = OrderedDict()
        self._gears: List[Tuple[str, Optional[float]]] = [(CLEAN, None)]
        for dtype, levels in distortions.items():
            if dtype not in KERNELS:
                raise ValueError(
                    f'unknown distortion type {dtype!r}'
                    f'{did_you_mean(dtype, KERNELS)}; known '
                    f'types: {sorted(KERNELS)}'
                )
            levels = list(levels)
            if not levels:
                raise ValueError(f'distortion type {dtype!r} has no levels')
            if len(set(levels)) != len(levels):
                raise ValueError(
                    f'distortion type {dtype!r} lists a level twice: {levels}'
                )
            self.distortions[dtype] = levels
            self._gears.extend((dtype, level) for level in levels)

    @property
    def types(self) -> List[str]:
        return list(self.distortions)

    @property
    def num_gears(self) -> int:
        """Number of gears, the clean gear included."""
        return len(self._gears)

    def gears(self) -> List[Tuple[int, str, Optional[float]]]:
        """Every (gear id, type, level), the clean gear first."""
        return [(i, t, lv) for i, (t, lv) in enumerate(self._gears)]

    def levels(self, distortion_type: str) -> List:
        self._check_type(distortion_type)
        return list(self.distortions[distortion_type])

    def _check_type(self, distortion_type: str) -> None:
        if distortion_type not in self.distortions:
            raise ValueError(
                f'distortion type {distortion_type!r} is not in the '
                f'distortion space{did_you_mean(distortion_type, self.types)}'
                f'; its types are {self.types}'
            )

    def listed_level(self, distortion_type: str, level: float):
        """The listed level equal to ``level`` (up to float rounding), or
        None where the type lists no such level (never snaps)."""
        self._check_type(distortion_type)
        if level is None:
            raise ValueError(
                f'distortion type {distortion_type!r} needs a level'
            )
        for listed in self.distortions[distortion_type]:
            if math.isclose(
                float(listed), float(level), rel_tol=1e-6, abs_tol=1e-9
            ):
                return listed
        return None

    def resolve_level(self, distortion_type: str, level: float):
        """The listed level equal to ``level`` (or nearest, if snapping)."""
        listed = self.listed_level(distortion_type, level)
        if listed is not None:
            return listed
        levels = self.distortions[distortion_type]
        if self.snap == 'nearest':
            return min(levels, key=lambda lv: abs(float(lv) - float(level)))
        raise ValueError(
            f'level {level} is not in the distortion space for '
            f'{distortion_type!r}; valid levels: {levels} (or build the '
            "space with snap='nearest')"
        )

    def gear_id(self, distortion_type: str, level=None) -> int:
        """The gear of (type, level); ``'clean'`` is gear 0."""
        if distortion_type == CLEAN:
            return CLEAN_GEAR
        level = self.resolve_level(distortion_type, level)
        return self._gears.index((distortion_type, level))

    def bracketing_gears(
        self, distortion_type: str, level
    ) -> List[Tuple[int, float]]:
        """The gears whose levels bracket ``level``, with linear weights.

        The weights are linear in the level's own scale (JPEG quality,
        brightness factor, noise sigma...), whatever order the type lists
        its levels in:

        - a listed level: ``[(its gear, 1.0)]``;
        - a level between two listed levels ``a`` and ``b`` (adjacent in
          value): ``[(gear_a, w_a), (gear_b, w_b)]`` in gear order, with
          ``w_a = (b - level) / (b - a)`` and ``w_b = 1 - w_a``, so the
          closer level weighs more and the weights sum to 1;
        - a level beyond the listed range: ``[(gear of the nearest end,
          1.0)]``.

        ``'clean'`` gives ``[(0, 1.0)]``. The space's ``snap`` plays no
        part: this is the alternative to snapping.

        Example:
            >>> space = DistortionSpace(dict(jpeg=[20, 10, 5]))
            >>> space.bracketing_gears('jpeg', 8)
            [(2, 0.6), (3, 0.4)]
        """
        if distortion_type == CLEAN:
            return [(CLEAN_GEAR, 1.0)]
        listed = self.listed_level(distortion_type, level)
        if listed is not None:
            return [(self.gear_id(distortion_type, listed), 1.0)]
        value = float(level)
        ordered = sorted(
            self.distortions[distortion_type], key=lambda lv: float(lv)
        )
        if value <= float(ordered[0]) or value >= float(ordered[-1]):
            end = ordered[0] if value <= float(ordered[0]) else ordered[-1]
            return [(self.gear_id(distortion_type, end), 1.0)]
        for low, high in zip(ordered, ordered[1:]):
            if float(low) < value < float(high):
                break
        w_low = (float(high) - value) / (float(high) - float(low))
        pairs = [
            (self.gear_id(distortion_type, low), w_low),
            (self.gear_id(distortion_type, high), 1.0 - w_low),
        ]
        return sorted(pairs)

    def level_of(self, gear: int) -> Tuple[str, Optional[float]]:
        """The (type, level) of a gear id."""
        check_gear_id(gear, self.num_gears)
        return self._gears[gear]

    def gear_table(self) -> List[list]:
        """``[type, level]`` of every gear id, the clean gear first: a
        gear's identity, which files that hold gears record (plain lists,
        for JSON and weights-only checkpoints)."""
        return [[t, lv] for t, lv in self._gears]

    def same_gears(self, other: 'DistortionSpace') -> bool:
        """Whether both spaces hold the same (type, level) gears, in any
        order (``snap`` aside)."""
        if other.num_gears != self.num_gears:
            return False
        try:
            self.gear_map(other.gear_table())
        except ValueError:
            return False
        return True

    def gear_map(self, table: Sequence) -> Dict[int, int]:
        """Where each gear of this space sits in another gear table.

        Args:
            table (Sequence): ``[type, level]`` per gear id, as
                :meth:`gear_table` gives (e.g. read from a file).

        Returns:
            dict: this space's gear id -> the id of the same (type, level)
            in ``table``; levels match up to float rounding, never by
            snapping.

        Raises:
            ValueError: ``table`` lacks a gear of this space (both tables
                named).
        """
        table = [tuple(entry) for entry in table]
        mapping, missing = {}, []
        for i, gear in enumerate(self._gears):
            found = next(
                (
                    j
                    for j, theirs in enumerate(table)
                    if _same_gear(gear, theirs)
                ),
                None,
            )
            if found is None:
                missing.append(gear)
            else:
                mapping[i] = found
        if missing:
            raise ValueError(
                f'the gear table lacks {len(missing)} gear(s) of this '
                f'model ({", ".join(_gear_name(g) for g in missing)}):\n'
                f'  table: {format_gears(table)}\n'
                f'  model: {format_gears(self._gears)}'
            )
        return mapping

    def record(self, distortion_type: str, level=None) -> dict:
        """The ``distortion`` entry that transforms write into results."""
        if distortion_type == CLEAN:
            return dict(type=CLEAN, level=None, gear=CLEAN_GEAR)
        level = self.resolve_level(distortion_type, level)
        return dict(
            type=distortion_type,
            level=level,
            gear=self.gear_id(distortion_type, level),
        )

    def to_dict(self) -> dict:
        return dict(
            distortions={k: list(v) for k, v in self.distortions.items()},
            snap=self.snap,
        )

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, DistortionSpace)
            and self.to_dict() == other.to_dict()
        )

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(distortions='
            f'{dict(self.distortions)}, snap={self.snap!r})'
        )


def _same_gear(a: Sequence, b: Sequence) -> bool:
    """Whether two ``(type, level)`` gears are one (levels up to float
    rounding)."""
    (ta, la), (tb, lb) = a, b
    if ta != tb:
        return False
    if la is None or lb is None:
        return la is None and lb is None
    return math.isclose(float(la), float(lb), rel_tol=1e-6, abs_tol=1e-9)


def _gear_name(gear: Sequence) -> str:
    dtype, level = gear
    return dtype if level is None else f'{dtype}@{level}'


def format_gears(table: Sequence) -> str:
    """A gear table as ``0:clean 1:jpeg@40 ...`` (the ids of its own
    order), for messages."""
    return ' '.join(f'{i}:{_gear_name(g)}' for i, g in enumerate(table))


# The gear table as a module's extra state (``_extra_state`` in a state
# dict): a uint8 tensor of UTF-8 JSON, not a Python object, since mmengine
# broadcasts every state-dict value as a tensor (distributed training) and
# user code may treat every value as one.
GEAR_TABLE_STATE = 'gearnn.gear_table'
GEAR_TABLE_STATE_VERSION = 1


def encode_gear_table(table: Sequence) -> torch.Tensor:
    """A gear table (:meth:`DistortionSpace.gear_table`) as a 1-D uint8
    tensor: UTF-8 JSON ``{"format", "version", "gear_table"}``."""
    record = dict(
        format=GEAR_TABLE_STATE,
        version=GEAR_TABLE_STATE_VERSION,
        gear_table=[list(entry) for entry in table],
    )
    text = json.dumps(record, separators=(',', ':'), allow_nan=False)
    return torch.tensor(list(text.encode('utf-8')), dtype=torch.uint8)


def decode_gear_table(state: Any) -> Optional[List[list]]:
    """The gear table that :func:`encode_gear_table` wrote; also reads the
    ``dict(gear_table=...)`` that earlier checkpoints hold. None where
    ``state`` records no table (None, or a dict without one).

    Raises:
        ValueError: ``state`` is not a gear table of a known format.
    """
    if state is None:
        return None
    if isinstance(state, dict):
        table = state.get('gear_table')
        return None if table is None else _checked_table(table)
    if not (
        isinstance(state, torch.Tensor)
        and state.dtype == torch.uint8
        and state.dim() == 1
    ):
        kind = (
            f'a {state.dtype} tensor of shape {tuple(state.shape)}'
            if isinstance(state, torch.Tensor)
            else f'a {type(state).__name__}'
        )
        raise ValueError(
            f'the recorded gear table is {kind}, not the 1-D uint8 tensor '
            'that GearNN writes'
        )
    try:
        record = json.loads(bytes(state.tolist()).decode('utf-8'))
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError
        raise ValueError(
            f'the recorded gear table is not readable JSON ({err})'
        ) from None
    if not isinstance(record, dict) or record.get('format') != (
        GEAR_TABLE_STATE
    ):
        raise ValueError(
            f'the recorded gear table is not of format {GEAR_TABLE_STATE!r}'
        )
    version = record.get('version')
    if version != GEAR_TABLE_STATE_VERSION:
        raise ValueError(
            f'the recorded gear table has format version {version!r}; this '
            f'version of mmseg_gearnn reads version '
            f'{GEAR_TABLE_STATE_VERSION} (a newer mmseg_gearnn wrote it?)'
        )
    return _checked_table(record.get('gear_table'))


def _checked_table(table: Any) -> List[list]:
    """``table`` as ``[type, level]`` lists, or a ValueError saying what
    is wrong with it."""
    if isinstance(table, (list, tuple)):
        entries = [list(e) for e in table if isinstance(e, (list, tuple))]
        if len(entries) == len(table) and all(
            len(e) == 2
            and isinstance(e[0], str)
            and (
                e[1] is None
                or (
                    isinstance(e[1], (int, float))
                    and not isinstance(e[1], bool)
                )
            )
            for e in entries
        ):
            return entries
    raise ValueError(
        'the recorded gear table is not a list of [type, level] pairs: '
        f'{table!r}'
    )


def compound_record(components: Sequence) -> dict:
    """The ``distortion`` record of several distortions applied in order.

    ``components`` is a list of ``dict(type, level)`` (or ``(type,
    level)`` pairs), in the order they were applied. The record keeps them
    under ``components``; its ``type`` and ``level`` name the compound (the
    component types and levels joined by ``'+'``, e.g. ``'brightness+jpeg'``
    and ``'0.1+5'``) so that a metric groups and a log prints it as one
    condition; its ``gear`` is None: a compound is no gear of any table,
    and the model picks its gear(s) from the components (see
    ``GearNNSegmentor``'s ``compound_routing``).
    """
    parts = []
    for component in components:
        if isinstance(component, dict):
            dtype, level = component.get('type'), component.get('level')
        else:
            dtype, level = component
        if dtype not in KERNELS:
            raise ValueError(
                f'unknown distortion type {dtype!r} in a compound'
                f'{did_you_mean(dtype, KERNELS)}; known '
                f'types: {sorted(KERNELS)}'
            )
        if level is None:
            raise ValueError(f'compound component {dtype!r} needs a level')
        parts.append(dict(type=dtype, level=level))
    if not parts:
        raise ValueError('a compound distortion needs at least one component')
    return dict(
        type=COMPOUND_SEPARATOR.join(p['type'] for p in parts),
        level=COMPOUND_SEPARATOR.join(str(p['level']) for p in parts),
        gear=None,
        components=parts,
    )


@dataclass(frozen=True)
class DistortionRecord:
    """A ``distortion`` record as transforms write it, parsed.

    Transforms write a plain dict into ``results['distortion']`` (see
    :meth:`DistortionSpace.record` and :func:`compound_record`), which
    ``PackSegInputs`` carries to ``data_sample.metainfo['distortion']``;
    :func:`parse_distortion_record` is the one reader of it.

    Attributes:
        type (str, optional): the distortion type, ``'clean'``, or None for
            a record that names only a gear.
        level: the level (None for clean or a gear-only record).
        gear (int, optional): the gear recorded by the transform, in the
            transform's own table (None for a compound).
        components (tuple[DistortionRecord]): the distortions of a
            compound, in the order applied (each without a gear); empty
            otherwise.
        source (dict): the record as written, for messages.
    """

    type: Optional[str] = None
    level: Any = None
    gear: Optional[int] = None
    components: Tuple['DistortionRecord', ...] = ()
    source: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_compound(self) -> bool:
        return bool(self.components)


def parse_distortion_record(record: Optional[dict]):
    """The :class:`DistortionRecord` of a ``distortion`` dict (None for a
    missing or empty one).

    Raises:
        ValueError: a type without a level, or a compound component that
            is not a dict with a type.
    """
    if not record:
        return None
    if not isinstance(record, dict):
        raise TypeError(f'distortion metadata must be a dict, got {record!r}')
    if record.get('components'):
        components = list(record['components'])
        for c in components:
            if not isinstance(c, dict) or c.get('type') is None:
                raise ValueError(
                    f'compound distortion metadata {record}: every '
                    'component needs a type and a level'
                )
        return DistortionRecord(
            type=record.get('type'),
            level=record.get('level'),
            components=tuple(
                _parse_level_record(dict(c, gear=None)) for c in components
            ),
            source=record,
        )
    return _parse_level_record(record)


def _parse_level_record(record: dict) -> DistortionRecord:
    dtype = record.get('type')
    level = record.get('level')
    if dtype not in (None, CLEAN) and level is None:
        raise ValueError(
            f'distortion metadata {record} has a type but no level'
        )
    return DistortionRecord(
        type=dtype, level=level, gear=record.get('gear'), source=record
    )


def build_space(space) -> DistortionSpace:
    """A :class:`DistortionSpace` from itself or from its config dict."""
    if isinstance(space, DistortionSpace):
        return space
    if space is None:
        raise ValueError('no distortion space given')
    space = dict(space)
    space.pop('type', None)
    if 'distortions' not in space:
        raise ValueError(
            "a distortion space config needs a 'distortions' "
            f'key, got keys {sorted(space)}'
        )
    return DistortionSpace(**space)
