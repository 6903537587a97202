"""Gear routing: where each sample runs.

``base.py`` holds what every router shares (reading distortion metadata,
asking the estimator), ``policies.py`` one registered class per policy,
``severity.py`` the severity table that compound routing compares.
"""

from typing import Optional, Union

from mmseg.registry import MODELS

from .base import COMPOUND_ROUTING, LEVEL_ROUTING, GearRouter
from .policies import (
    ROUTING_POLICIES,
    CheckedGearRouter,
    ConfidentGearRouter,
    DefaultGearRouter,
    EstimateGearRouter,
    MetadataGearRouter,
)
from .severity import gear_severity, severity_of


def build_router(
    router: Optional[Union[dict, GearRouter]],
    space,
    default_gear: int,
    routing: Optional[str] = None,
    **options,
) -> GearRouter:
    """The segmentor's router from its ``router`` config and the older
    keys (``routing``, ``estimator``, ``level_routing``,
    ``compound_routing``, ``compound_severity``), which override it where
    given (not None).

    Args:
        router (dict | GearRouter, optional): a router config (``type`` a
            registered router); None for ``MetadataGearRouter``.
        space (DistortionSpace): the model's gear table.
        default_gear (int): used where the router config names none.
        routing (str, optional): a policy name of
            :data:`ROUTING_POLICIES`; replaces the config's type.
        **options: router arguments; None values are ignored.
    """
    if isinstance(router, GearRouter):
        return router
    cfg = dict(router or dict(type=ROUTING_POLICIES['metadata']))
    if routing is not None:
        if routing not in ROUTING_POLICIES:
            raise ValueError(
                f'routing must be one of {tuple(ROUTING_POLICIES)}, got '
                f'{routing!r}'
            )
        cfg['type'] = ROUTING_POLICIES[routing]
    cfg.update({k: v for k, v in options.items() if v is not None})
    cfg.setdefault('default_gear', default_gear)
    cfg['space'] = space
    return MODELS.build(cfg)


__all__ = [
    'COMPOUND_ROUTING',
    'LEVEL_ROUTING',
    'ROUTING_POLICIES',
    'CheckedGearRouter',
    'ConfidentGearRouter',
    'DefaultGearRouter',
    'EstimateGearRouter',
    'GearRouter',
    'MetadataGearRouter',
    'build_router',
    'gear_severity',
    'severity_of',
]
