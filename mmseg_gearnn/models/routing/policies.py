"""The routing policies: one registered class each.

A new policy is a new :class:`~.base.GearRouter` subclass here, registered
in mmseg's ``MODELS`` and named by the segmentor's ``router`` config, e.g.
``router=dict(type='CheckedGearRouter', estimator='estimator.pth')``.
"""

import numbers
from typing import List, Optional, Sequence

import torch
from mmseg.registry import MODELS
from torch import Tensor

from ...distortions import CLEAN, CLEAN_GEAR
from ...distortions.space import parse_distortion_record
from ..gear_bank import Route, route_pairs
from .base import Decision, GearRouter


@MODELS.register_module()
class MetadataGearRouter(GearRouter):
    """The distortion metadata (see :meth:`GearRouter.metadata_route`); the
    estimate where a sample has none (when an estimator is set), else
    ``default_gear``."""

    policy = 'metadata'

    def decide(
        self, inputs: Tensor, data_samples: Optional[Sequence], preprocessor
    ) -> List[Decision]:
        meta = self.metadata_routes(data_samples, inputs.shape[0])
        if self.estimator is None or all(m is not None for m in meta):
            return [(m, 'metadata') for m in meta]
        estimates = self.estimate_gears(inputs, data_samples, preprocessor)
        return [
            (m, 'metadata') if m is not None else (e, 'estimate')
            for m, e in zip(meta, estimates)
        ]


@MODELS.register_module()
class EstimateGearRouter(GearRouter):
    """Always the estimate of the distortion estimator; metadata unread."""

    policy = 'estimate'
    needs_estimator = True

    def decide(
        self, inputs: Tensor, data_samples: Optional[Sequence], preprocessor
    ) -> List[Decision]:
        estimates = self.estimate_gears(inputs, data_samples, preprocessor)
        return [(e, 'estimate') for e in estimates]


@MODELS.register_module()
class CheckedGearRouter(GearRouter):
    """The metadata unless the estimate names a distortion type that the
    metadata's gear(s) do not (wrong or stale metadata), then the
    estimate; the estimate where a sample has no metadata."""

    policy = 'checked'
    needs_estimator = True

    def decide(
        self, inputs: Tensor, data_samples: Optional[Sequence], preprocessor
    ) -> List[Decision]:
        meta = self.metadata_routes(data_samples, inputs.shape[0])
        estimates = self.estimate_gears(inputs, data_samples, preprocessor)
        decisions = []
        for from_meta, estimate in zip(meta, estimates):
            if from_meta is None:
                decisions.append((estimate, 'estimate'))
                continue
            meta_types = {
                self.space.level_of(g)[0] for g, _ in route_pairs(from_meta)
            }
            if self.space.level_of(estimate)[0] not in meta_types:
                decisions.append((estimate, 'estimate (metadata rejected)'))
            else:
                decisions.append((from_meta, 'metadata'))
        return decisions


@MODELS.register_module()
class DefaultGearRouter(GearRouter):
    """``default_gear`` for every sample, metadata unread (e.g. gear 0: the
    clean model, as a reference)."""

    policy = 'default'

    def decide(
        self, inputs: Tensor, data_samples: Optional[Sequence], preprocessor
    ) -> List[Decision]:
        return [(None, 'default')] * inputs.shape[0]


@MODELS.register_module()
class ConfidentGearRouter(GearRouter):
    """The gear the metadata names, else the estimate when the estimator
    is confident, else no gear: ``default_gear`` (gear 0, the base itself).

    For a distortion no gear was trained on, the estimator still names the
    nearest gear, and that gear can do worse than the base (a robust base,
    e.g. one fine-tuned on mixed distortions, often does better on what
    nothing fits). This policy runs a sample on the estimated gear only
    when the estimator gives that gear a probability of at least
    ``threshold``; below it the sample falls back to ``default_gear``.

    Per sample, in order:

    - metadata naming a level of the gear table (or clean, or a gear id):
      its gear, as :class:`MetadataGearRouter` routes it;
    - metadata naming a type the table lacks, or none: the estimate if its
      probability is ``>= threshold`` (source ``'estimate'``), else
      ``default_gear`` (source ``'fallback'``); without an estimator,
      always ``default_gear`` (e.g. while training, where every sample has
      metadata);
    - a sample routed to the clean gear 0 (by metadata or estimate) runs
      on ``clean_gear``: gear 0 itself by default, or a gear the table
      lists and that was trained on clean frames (e.g. an identity level
      such as ``brightness`` 1.0), which wins back clean accuracy over a
      robust base.

    Each sample's metainfo also gets ``gear_confidence`` (the estimate's
    probability; None where the metadata decided).

    The estimator may have been trained for a part of the gear table (every
    level of its space must be one of the table's): e.g. for the table
    without the clean gear's identity level, whose frames look clean. Its
    gears are mapped to the table's by (type, level).

    Args:
        space (dict | DistortionSpace): the gear table.
        estimator (str, optional): a distortion estimator file.
        threshold (float): the least probability of the estimated gear,
            in [0, 1]; 0 always takes the estimate (the ``'estimate'``
            policy, with metadata and ``clean_gear``).
        clean_gear (int): the gear a clean sample runs on (default 0).
        **kwargs: the other arguments of :class:`GearRouter`.
    """

    policy = 'confident'

    def __init__(
        self,
        space,
        estimator: Optional[str] = None,
        threshold: float = 0.5,
        clean_gear: int = CLEAN_GEAR,
        **kwargs,
    ) -> None:
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, numbers.Real)
            or not 0.0 <= threshold <= 1.0
        ):
            raise ValueError(
                f'threshold must be a probability in [0, 1], got {threshold!r}'
            )
        super().__init__(space, **kwargs)
        self._gear_map = None
        if estimator is not None:
            self._load_estimator(estimator)
        if isinstance(clean_gear, bool) or not isinstance(clean_gear, int):
            raise ValueError(
                f'clean_gear must be a gear id, got {clean_gear!r}'
            )
        self.space.level_of(clean_gear)  # raises outside the gear table
        self.threshold = float(threshold)
        self.clean_gear = clean_gear

    def _load_estimator(self, estimator: str) -> None:
        """The estimator, its gears mapped to the table's."""
        from ..estimators import DistortionEstimator

        self.estimator = DistortionEstimator.load(estimator)
        gear_map = []
        for gear, dtype, level in self.estimator.space.gears():
            if dtype == CLEAN:
                gear_map.append(CLEAN_GEAR)
                continue
            if dtype not in self.space.types or (
                self.space.listed_level(dtype, level) is None
            ):
                raise ValueError(
                    f'the estimator {estimator} knows ({dtype}, {level}), '
                    'which the gear table does not list'
                )
            gear_map.append(self.space.gear_id(dtype, level))
        self._gear_map = torch.tensor(gear_map, dtype=torch.int64)

    def estimate_probabilities(
        self, inputs: Tensor, data_samples: Optional[Sequence], preprocessor
    ) -> Tensor:
        """The estimate's probabilities over the gear table's gears."""
        probs = super().estimate_probabilities(
            inputs, data_samples, preprocessor
        )
        table = probs.new_zeros((probs.shape[0], self.space.num_gears))
        return table.index_add_(1, self._gear_map, probs)

    def known_metadata_route(self, data_sample) -> Optional[Route]:
        """The metadata route of a sample whose metadata the gear table
        can route (None without metadata or for a type the table lacks)."""
        record = parse_distortion_record(
            data_sample.metainfo.get('distortion')
            if data_sample is not None
            else None
        )
        if record is None:
            return None
        types = (
            [c.type for c in record.components]
            if record.is_compound
            else [record.type]
        )
        for dtype in types:
            if dtype not in (None, CLEAN) and dtype not in self.space.types:
                return None
        return self.metadata_route(data_sample)

    def decide(
        self, inputs: Tensor, data_samples: Optional[Sequence], preprocessor
    ) -> List[Decision]:
        size = inputs.shape[0]
        meta = [
            self.known_metadata_route(
                data_samples[i] if data_samples else None
            )
            for i in range(size)
        ]
        confidence: List[Optional[float]] = [None] * size
        decisions: List[Decision] = [
            (m, 'metadata')
            if m is not None
            else (self.default_gear, 'fallback')
            for m in meta
        ]
        if self.estimator is not None and any(m is None for m in meta):
            probs = self.estimate_probabilities(
                inputs, data_samples, preprocessor
            )
            best, gears = probs.max(dim=1)
            for i, m in enumerate(meta):
                if m is not None:
                    continue
                confidence[i] = float(best[i])
                if confidence[i] >= self.threshold:
                    decisions[i] = (int(gears[i]), 'estimate')
                else:
                    decisions[i] = (self.default_gear, 'fallback')
        out = []
        for i, (route, source) in enumerate(decisions):
            if route == CLEAN_GEAR and source != 'fallback':
                route = self.clean_gear
            if data_samples:
                data_samples[i].set_metainfo(
                    dict(gear_confidence=confidence[i])
                )
            out.append((route, source))
        return out


#: The segmentor's ``routing`` key: policy name -> router type.
ROUTING_POLICIES = {
    router.policy: router.__name__
    for router in (
        MetadataGearRouter,
        EstimateGearRouter,
        CheckedGearRouter,
        DefaultGearRouter,
        ConfidentGearRouter,
    )
}
