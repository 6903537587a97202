"""How much a CamVid-C run does, and the distortion spaces it uses.

A CamVid-C run uses four spaces built from the standard corruptions
(:mod:`mmseg_gearnn.distortions.corruptions`):

=================  ===================================================
``train``          the trained benchmark corruptions (all but
                   ``untrained``) at every severity: what mixed
                   augmentation, stability training and the gears train
                   on, and what the estimator learns
``trained``        the same levels, evaluated
``untrained``      the benchmark corruptions left out of training and the
                   held-out ones at every severity: evaluated only, never
                   trained on or selected with
``all``            every benchmark and held-out level, evaluated
``gears``          the gear table over the trained corruptions: one gear
                   per corruption (severities share it, ``snap='nearest'``
                   routes every severity there) or one per corruption and
                   severity
=================  ===================================================
"""

from dataclasses import dataclass, replace
from typing import Tuple

from mmseg_gearnn.distortions import (
    BENCHMARK_CORRUPTIONS,
    HELD_OUT_CORRUPTIONS,
    SEVERITIES,
    corruption_type,
)

from .profiles import BenchmarkProfile

# How gears map to conditions.
GEAR_MAPPINGS = ('per_corruption', 'per_severity')
# The gear of a corruption whose severities share one: listed at the middle
# severity, the others snap to it (the level only names the gear).
SHARED_GEAR_SEVERITY = 3


@dataclass
class CorruptionProfile:
    """How much of everything a CamVid-C run does.

    Args:
        stages (BenchmarkProfile): what the shared stages read: iterations,
            frames, budget, selection steps, BN re-estimation, resolution.
            Its ``val_images`` may list frame indices.
        corruptions (tuple[str]): the benchmark corruptions trained on and
            evaluated.
        held_out (tuple[str]): the corruptions only evaluated.
        untrained (tuple[str]): benchmark corruptions left out of every
            training (too slow to make on the fly): evaluated like the
            held-out ones.
        severities (tuple[int]): the severities of both.
        gear_mappings (tuple[str]): the gear tables GearNN is trained
            with; the first is reported as ``gearnn``.
        alpha (float): the stability weight.
        estimator_images (int): training frames the distortion estimator
            sees under every condition.
        seed (int): seeds the corrupted val frames and the estimator.
    """

    stages: BenchmarkProfile
    corruptions: Tuple[str, ...] = BENCHMARK_CORRUPTIONS
    held_out: Tuple[str, ...] = HELD_OUT_CORRUPTIONS
    untrained: Tuple[str, ...] = ()
    severities: Tuple[int, ...] = SEVERITIES
    gear_mappings: Tuple[str, ...] = ('per_corruption',)
    alpha: float = 3.0
    estimator_images: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.corruptions:
            if name not in BENCHMARK_CORRUPTIONS:
                raise ValueError(f'{name!r} is no benchmark corruption')
        for name in self.held_out:
            if name not in HELD_OUT_CORRUPTIONS:
                raise ValueError(f'{name!r} is no held-out corruption')
        for name in self.untrained:
            if name not in self.corruptions:
                raise ValueError(f'untrained {name!r} is not evaluated')
        if not self.trained:
            raise ValueError('every benchmark corruption is untrained')
        for mapping in self.gear_mappings:
            if mapping not in GEAR_MAPPINGS:
                raise ValueError(
                    f'unknown gear mapping {mapping!r}; choose from '
                    f'{GEAR_MAPPINGS}'
                )
        if not self.gear_mappings:
            raise ValueError('give at least one gear mapping')

    def _space(self, corruptions, severities=None) -> dict:
        severities = list(severities or self.severities)
        return dict(
            distortions={
                corruption_type(c): list(severities) for c in corruptions
            },
            snap='error',
        )

    @property
    def trained(self) -> Tuple[str, ...]:
        """The benchmark corruptions trained on."""
        return tuple(c for c in self.corruptions if c not in self.untrained)

    def train_space(self) -> dict:
        return self._space(self.trained)

    def eval_space(self, sweep: str) -> dict:
        """The evaluated levels: ``'all'``, ``'trained'`` or
        ``'untrained'`` (see the module docstring)."""
        corruptions = dict(
            all=self.corruptions + self.held_out,
            trained=self.trained,
            untrained=self.untrained + self.held_out,
        )
        if sweep not in corruptions:
            raise ValueError(f'unknown sweep {sweep!r}')
        return self._space(corruptions[sweep])

    def gear_space(self, mapping: str) -> dict:
        if mapping == 'per_severity':
            return self.train_space()
        space = self._space(self.trained, [SHARED_GEAR_SEVERITY])
        space['snap'] = 'nearest'
        return space


# The 24 val frames of the scale measurement: every 4th of the
# first 96.
EVERY_4TH_VAL_FRAME = tuple(range(0, 96, 4))

PROFILES = {
    # About an hour on 2 CPU cores from a trained base: 100 iterations a
    # method as the CamVid benchmark, 24 val frames at 240x320. Glass blur
    # costs 2.6-8 s a 240x320 crop (the others 0.3 s at most): made on the
    # fly it would double every training stage, so no method trains on it.
    'full': CorruptionProfile(
        stages=BenchmarkProfile(
            iters=100, val_images=EVERY_4TH_VAL_FRAME, selection_steps=2
        ),
        untrained=('glass_blur',),
    ),
    # A smoke run: checks the machinery and the output, not the accuracy.
    'quick': CorruptionProfile(
        stages=BenchmarkProfile(
            iters=2,
            base_iters=2,
            train_images=4,
            val_images=(0, 1),
            selection_steps=1,
            num_workers=0,
            batch_size=2,
            bn_batches_per_gear=1,
            bn_max_batches=4,
            crop_size=(96, 128),
        ),
        corruptions=('gaussian_noise', 'contrast'),
        held_out=('speckle_noise',),
        untrained=('contrast',),
        severities=(1, 5),
        estimator_images=2,
    ),
}


def resolve_corruption_profile(
    name: str, **stage_overrides
) -> Tuple[str, CorruptionProfile]:
    """``(name, profile)`` with ``stage_overrides`` of its stage settings
    (None values ignored); the name lists them."""
    if name not in PROFILES:
        raise ValueError(
            f'unknown profile {name!r}; choose from {sorted(PROFILES)}'
        )
    profile = PROFILES[name]
    overrides = {k: v for k, v in stage_overrides.items() if v is not None}
    if overrides:
        profile = replace(profile, stages=replace(profile.stages, **overrides))
        name += ' with ' + ', '.join(
            f'{k}={v}' for k, v in sorted(overrides.items())
        )
    return name, profile


def gear_count(profile: CorruptionProfile, mapping: str) -> int:
    """Distorted gears of a mapping (the clean gear is the base)."""
    per = 1 if mapping == 'per_corruption' else len(profile.severities)
    return len(profile.trained) * per
