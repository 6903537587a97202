"""The routing policies: one registered class each.

A new policy is a new :class:`~.base.GearRouter` subclass here, registered
in mmseg's ``MODELS`` and named by the segmentor's ``router`` config, e.g.
``router=dict(type='CheckedGearRouter', estimator='estimator.pth')``.
"""

from typing import List, Optional, Sequence

from mmseg.registry import MODELS
from torch import Tensor

from ..gear_bank import route_pairs
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


#: The segmentor's ``routing`` key: policy name -> router type.
ROUTING_POLICIES = {
    router.policy: router.__name__
    for router in (
        MetadataGearRouter,
        EstimateGearRouter,
        CheckedGearRouter,
        DefaultGearRouter,
    )
}
