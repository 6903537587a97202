"""What every gear router shares: reading distortion metadata (levels the
table lists, levels between its gears, compounds) and asking a distortion
estimator."""

from typing import List, Optional, Sequence, Tuple, Union

from torch import Tensor

from ...distortions import CLEAN, CLEAN_GEAR, build_space
from ...distortions.space import DistortionRecord, parse_distortion_record
from ..gear_bank import Route, as_route, heaviest_gear, route_pairs
from .severity import gear_severity, severity_of

LEVEL_ROUTING = ('nearest', 'interpolate')
COMPOUND_ROUTING = ('dominant', 'first', 'blend')

#: One sample's decision: its route (None: the default gear) and why.
Decision = Tuple[Optional[Route], str]


class GearRouter:
    """Decides where each sample of a batch runs: a gear id or a blend.

    A policy is a subclass that implements :meth:`decide` and registers
    itself in mmseg's ``MODELS`` (see :mod:`.policies`); the segmentor
    names it in its ``router`` config.

    Args:
        space (dict | DistortionSpace): the gear table.
        default_gear (int): gear of a sample the policy leaves undecided.
        level_routing (str): where a level that the gear table does not
            list runs (see :meth:`metadata_route`): ``'nearest'`` (default)
            on one gear as the space's ``snap`` decides, ``'interpolate'``
            (inference only) on the blend of the two gears whose levels
            bracket it.
        compound_routing (str): where a compound distortion (metadata with
            ``components``) runs: ``'blend'`` (default; inference only) on
            the equal-weight blend of every component's gear(s), the best
            of the three on CamVid (``benchmarks/results/
            levels_between.json``); ``'dominant'`` on the gear of its most
            severe component, which can also train that gear; ``'first'``
            on the gear of the component applied first.
        compound_severity (str | dict, optional): the severity of each
            (type, level), which ``'dominant'`` compares across types: the
            path of a ``DistortionIoUMetric`` report of the clean model
            (its measured drop), or ``{type: {level: severity}}``. None
            (default) uses the level's rank within its type (see
            :func:`~.severity.gear_severity`).
        estimator (str, optional): a distortion estimator file
            (``tools/train_estimator.py``), read when the router is built.
    """

    #: The policy's name in the segmentor's ``routing`` key.
    policy = ''
    #: Whether the policy cannot work without an estimator.
    needs_estimator = False

    def __init__(
        self,
        space,
        default_gear: int = CLEAN_GEAR,
        level_routing: str = 'nearest',
        compound_routing: str = 'blend',
        compound_severity: Optional[Union[str, dict]] = None,
        estimator: Optional[str] = None,
    ) -> None:
        self.space = build_space(space)
        self.space.level_of(default_gear)  # raises outside the gear table
        self.default_gear = default_gear
        if level_routing not in LEVEL_ROUTING:
            raise ValueError(
                f'level_routing must be one of {LEVEL_ROUTING}, got '
                f'{level_routing!r}'
            )
        self.level_routing = level_routing
        if compound_routing not in COMPOUND_ROUTING:
            raise ValueError(
                f'compound_routing must be one of {COMPOUND_ROUTING}, got '
                f'{compound_routing!r}'
            )
        self.compound_routing = compound_routing
        self.severity = gear_severity(self.space, compound_severity)
        self.estimator = None
        if estimator is not None:
            from ..estimators import DistortionEstimator

            self.estimator = DistortionEstimator.load(
                estimator, space=self.space
            )
        elif self.needs_estimator:
            raise ValueError(f'routing={self.policy!r} needs estimator=PATH')

    def decide(
        self, inputs: Tensor, data_samples: Optional[Sequence], preprocessor
    ) -> List[Decision]:
        """The policy: one :data:`Decision` per sample."""
        raise NotImplementedError

    def route(
        self, inputs: Tensor, data_samples: Optional[Sequence], preprocessor
    ) -> List[Route]:
        """Where every sample runs (see :meth:`decide`); an undecided one
        runs on ``default_gear``.

        Each sample's metainfo gets ``gear_routed`` (the gear, the heaviest
        one of a blend), ``gear_source`` and, for a blend, ``gear_blend``
        (``[[gear, weight], ...]``).
        """
        routes = []
        decisions = self.decide(inputs, data_samples, preprocessor)
        for i, (route, source) in enumerate(decisions):
            if route is None:
                route, source = self.default_gear, 'default'
            routes.append(route)
            if data_samples:
                info = dict(
                    gear_routed=heaviest_gear(route), gear_source=source
                )
                if isinstance(route, tuple):
                    info['gear_blend'] = [list(pair) for pair in route]
                data_samples[i].set_metainfo(info)
        return routes

    # -- metadata ----------------------------------------------------------
    def metadata_routes(
        self, data_samples: Optional[Sequence], size: int
    ) -> List[Optional[Route]]:
        return [
            self.metadata_route(data_samples[i] if data_samples else None)
            for i in range(size)
        ]

    def metadata_route(self, data_sample) -> Optional[Route]:
        """Where a sample's distortion metadata sends it (None without).

        - ``dict(gear)``: that gear;
        - ``dict(type, level[, gear])``: the gear of a listed level (a
          recorded gear must agree with it); a level the table does not
          list has no gear here, so its recorded gear, another table's, is
          ignored, and it runs under ``level_routing``: ``'nearest'`` as
          the space's ``snap`` says (an error unless ``snap='nearest'``),
          ``'interpolate'`` on the blend of
          :meth:`DistortionSpace.bracketing_gears`;
        - ``dict(components=[...])`` (a compound): each component is routed
          as above, then ``compound_routing`` picks: ``'first'``, the
          first component's route; ``'dominant'``, the route of the
          component of the highest :meth:`severity_of` (the first on a
          tie); ``'blend'``, every component's route at an equal share.

        Why a recorded gear is checked only for a listed level: a transform
        records the gear of its own space, which need not be this model's
        table (e.g. a sweep over levels in between the gears). For a level
        this table lists, a differing gear means the two tables disagree,
        which is an error; for a level it does not list, the recorded gear
        cannot name one of this table's gears, so (type, level) alone
        decide. A foreign table whose levels are also listed here would
        still clash: transforms on such a space take ``record_gear=False``.

        Returns:
            int | tuple | None: a gear id, a blend ``((gear, weight), ...)``
            or None.
        """
        record = parse_distortion_record(
            data_sample.metainfo.get('distortion')
            if data_sample is not None
            else None
        )
        if record is None:
            return None
        if record.is_compound:
            return self._compound_route(record)
        return self._level_route(record)

    def metadata_gear(self, data_sample) -> Optional[int]:
        """The gear from a sample's distortion metadata (None without); the
        heaviest gear where the metadata routes to a blend."""
        route = self.metadata_route(data_sample)
        return None if route is None else heaviest_gear(route)

    def gear_of(self, data_sample) -> int:
        """The gear of one sample from its metadata, else the default."""
        gear = self.metadata_gear(data_sample)
        return self.default_gear if gear is None else gear

    def severity_of(self, distortion_type: str, level) -> float:
        """The severity of (type, level) that ``'dominant'`` compares (see
        :func:`~.severity.gear_severity`)."""
        return severity_of(self.space, self.severity, distortion_type, level)

    def _level_route(self, record: DistortionRecord) -> Route:
        """The route of one (type, level, gear) record.

        A level the table lists runs on its gear, and a recorded gear must
        agree with it. A level the table does not list has no gear in this
        table, so a recorded gear can only be another table's (the one of
        the transform that made the record) and is ignored: the sample is
        routed by (type, level) under ``level_routing``.
        """
        dtype, gear = record.type, record.gear
        if dtype is None:
            self.space.level_of(gear)  # raises outside the gear table
            return gear
        if dtype == CLEAN:
            from_table = CLEAN_GEAR
        else:
            listed = self.space.listed_level(dtype, record.level)
            if listed is None:
                if self.level_routing == 'interpolate':
                    return as_route(
                        self.space.bracketing_gears(dtype, record.level)
                    )
                try:
                    return self.space.gear_id(dtype, record.level)
                except ValueError as err:
                    raise ValueError(
                        f"{err}, or give the model level_routing='interpolate'"
                    ) from err
            from_table = self.space.gear_id(dtype, listed)
        if gear is not None and gear != from_table:
            raise ValueError(
                f'distortion metadata {record.source} disagrees with the '
                f'gear table, which gives gear {from_table}'
            )
        return from_table

    def _compound_route(self, record: DistortionRecord) -> Route:
        """The route of a compound record under ``compound_routing``."""
        components = record.components
        routes = [self._level_route(c) for c in components]
        if self.compound_routing == 'first':
            return routes[0]
        if self.compound_routing == 'dominant':
            severities = [
                0.0 if c.type == CLEAN else self.severity_of(c.type, c.level)
                for c in components
            ]
            # max() keeps the first of equals: ties go to the first applied.
            return routes[severities.index(max(severities))]
        pairs = []
        for route in routes:
            pairs.extend((g, w / len(routes)) for g, w in route_pairs(route))
        return as_route(pairs)

    # -- estimate ----------------------------------------------------------
    def estimate_gears(
        self, inputs: Tensor, data_samples: Optional[Sequence], preprocessor
    ) -> List[int]:
        """The estimator's gear for each input image, preprocessed by
        ``preprocessor`` (a ``SegDataPreProcessor``: undone here)."""
        probs = self.estimate_probabilities(inputs, data_samples, preprocessor)
        return probs.argmax(dim=1).tolist()

    def estimate_probabilities(
        self, inputs: Tensor, data_samples: Optional[Sequence], preprocessor
    ) -> Tensor:
        """The estimator's gear probabilities ``(N, num_gears)`` of each
        input image (see :meth:`estimate_gears`)."""
        if self.estimator is None:
            raise ValueError(
                f'routing={self.policy!r} needs a distortion estimator: '
                'give estimator=PATH (tools/train_estimator.py makes one)'
            )
        from ..estimators import denormalize_inputs

        if hasattr(preprocessor, 'std') and getattr(
            preprocessor, '_enable_normalize', False
        ):
            mean, std = preprocessor.mean, preprocessor.std
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        shapes = None
        if data_samples:
            shapes = [
                s.metainfo.get('img_shape', inputs.shape[-2:])
                for s in data_samples
            ]
        images = denormalize_inputs(inputs.detach(), mean, std, shapes)
        order = (
            'rgb'
            if getattr(preprocessor, '_channel_conversion', False)
            else 'bgr'
        )
        crops = [image.clamp(0, 255) for image in images]
        return self.estimator.predict_proba(crops, order)
