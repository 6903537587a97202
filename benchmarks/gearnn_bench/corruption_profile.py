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

The recipe's gear table and training space also hold a clean gear: the
identity level :data:`CLEAN_GEAR_LEVEL` (``brightness`` 1.0, which leaves
a frame unchanged), trained on clean frames like any other gear and run
on clean frames by the ``ConfidentGearRouter``'s ``clean_gear``: over a
robust base, it wins back clean accuracy.
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
# The clean gear of a gear table: an identity level, (type, level).
CLEAN_GEAR_LEVEL = ('brightness', 1.0)


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
        seeds (tuple[int]): the training seeds of the seeded methods
            (``SEEDED_METHODS`` of the stages); 0 is the configs' own.
        tune_images (tuple[int]): the ``train_tune`` frames (indices) the
            tuning split evaluates: the routing threshold's choice and the
            training-length curve; never val.
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
    seeds: Tuple[int, ...] = (0,)
    tune_images: Tuple[int, ...] = tuple(range(0, 60, 5))

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
        if not self.seeds or self.seeds[0] != 0:
            raise ValueError(f'seeds must start with 0, got {self.seeds}')
        if not self.tune_images:
            raise ValueError('give at least one tuning frame')

    def _space(self, corruptions, severities=None, clean_gear=False):
        severities = list(severities or self.severities)
        distortions = {
            corruption_type(c): list(severities) for c in corruptions
        }
        if clean_gear:
            dtype, level = CLEAN_GEAR_LEVEL
            distortions[dtype] = [level]
        return dict(distortions=distortions, snap='error')

    @property
    def trained(self) -> Tuple[str, ...]:
        """The benchmark corruptions trained on."""
        return tuple(c for c in self.corruptions if c not in self.untrained)

    def train_space(self, clean_gear: bool = False) -> dict:
        """The trained levels; with ``clean_gear``, the clean gear's
        identity level too (a gear's share of the batches)."""
        return self._space(self.trained, clean_gear=clean_gear)

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

    def gear_space(self, mapping: str, clean_gear: bool = False) -> dict:
        if mapping == 'per_severity':
            return self.train_space(clean_gear)
        space = self._space(
            self.trained, [SHARED_GEAR_SEVERITY], clean_gear=clean_gear
        )
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
    # The full profile on half its val frames (every 8th of the first 96,
    # all among the full profile's cached frames) and 8 tuning frames: for
    # a machine shared with other work, where the full profile's
    # evaluations (24 frames x 96 conditions a method) do not fit.
    'light': CorruptionProfile(
        stages=BenchmarkProfile(
            iters=100, val_images=tuple(range(0, 96, 8)), selection_steps=2
        ),
        untrained=('glass_blur',),
        tune_images=tuple(range(0, 60, 8)),
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
        corruptions=('gaussian_noise', 'contrast', 'fog'),
        held_out=('speckle_noise',),
        untrained=('contrast',),
        severities=(1, 5),
        estimator_images=2,
        tune_images=(0, 1),
    ),
}


def resolve_corruption_profile(
    name: str, seeds=None, **stage_overrides
) -> Tuple[str, CorruptionProfile]:
    """``(name, profile)`` with ``stage_overrides`` of its stage settings
    and ``seeds`` (None values ignored); the name lists them."""
    if name not in PROFILES:
        raise ValueError(
            f'unknown profile {name!r}; choose from {sorted(PROFILES)}'
        )
    profile = PROFILES[name]
    overrides = {k: v for k, v in stage_overrides.items() if v is not None}
    if overrides:
        profile = replace(profile, stages=replace(profile.stages, **overrides))
    if seeds is not None:
        profile = replace(profile, seeds=tuple(seeds))
        overrides['seeds'] = tuple(seeds)
    if overrides:
        name += ' with ' + ', '.join(
            f'{k}={v}' for k, v in sorted(overrides.items())
        )
    return name, profile


def gear_count(
    profile: CorruptionProfile, mapping: str, clean_gear: bool = False
) -> int:
    """Trained gears of a mapping (gear 0 is the base; ``clean_gear`` adds
    the trained clean gear)."""
    per = 1 if mapping == 'per_corruption' else len(profile.severities)
    return len(profile.trained) * per + int(clean_gear)
