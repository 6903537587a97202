"""How much of everything a benchmark run does: the named profiles."""

from dataclasses import dataclass, replace
from typing import Optional, Tuple


@dataclass
class BenchmarkProfile:
    """How much of everything a benchmark run does.

    Args:
        iters (int): training iterations of every method trained from the
            base (mixed_aug, stability, every gear set).
        base_iters (int, optional): iterations of the base; None keeps the
            base config's schedule.
        train_images (int, optional): use only the first N training frames.
        val_images (int, optional): evaluate only the first N val frames.
        budget (float): per-gear budget of ``gearnn`` and
            ``random_selection`` (fraction of the model's bytes).
        scorings (tuple[str]): scoring methods run at ``budget``; the first
            is ``gearnn``, the others ``gearnn_{scoring}``.
        curve_budgets (tuple[float]): budgets of the budget curve.
        curve_scorings (tuple[str]): selections run at every curve budget
            (``'random'`` included for the control).
        tune (bool): train every method on the fitting part of ``train``
            and choose each method's knobs (its ``grid``) on the tuning
            part (:mod:`.tuning`); ``val`` only reports. False: train on
            all of ``train`` at the configs' values.
        tune_points (int, optional): at most this many values of each
            grid option (the first ones; the first is the config's
            default); None: all.
        tune_only (bool): stop after tuning: the tuning split's means and
            the recipe candidates, nothing on val, no other seeds.
        seeds (tuple[int]): the seeds each seeded method runs with, at its
            chosen values (0 is the configs' own seed); the results give
            their mean and spread.
        methods (tuple[str], optional): run only these methods (and the
            ones they start from); None: all.
        selection_steps (int): batches per level used to score tensors.
        num_workers (int): dataloader workers.
        batch_size (int, optional): training batch size; None keeps the
            configs'.
        gears_on_fine_tuned (bool): also run plain gears over the
            mixed_aug and the stability models (``gearnn_on_mixed_aug``,
            ``gearnn_on_stability``); the recipe, distilled gears over
            the mixed_aug model, always runs.
        bn_batches_per_gear (int): batches per gear with which
            ``GearBNRecalibrationHook`` re-estimates BN statistics after
            gear training.
        bn_max_batches (int, optional): at most this many batches for it;
            None: the hook's default.
        crop_size (tuple[int], optional): (h, w) at which every method
            trains and infers, resize steps scaled to match; None keeps the
            configs' resolution.
        distortion_space (dict, optional): the distortion space of every
            method (gears, training distortions, evaluation levels); None
            keeps the configs'.
        full_finetune_lr (float): learning rate of ``full_finetune``. Its
            gears hold every weight, which the small adaptors' rate of the
            gear config would throw off: on CamVid, at 10 times this rate
            its training loss rose to three times this rate's.
    """

    iters: int = 100
    base_iters: Optional[int] = None
    train_images: Optional[int] = None
    val_images: Optional[int] = None
    budget: float = 0.002
    scorings: Tuple[str, ...] = ('fisher',)
    curve_budgets: Tuple[float, ...] = (0.002,)
    curve_scorings: Tuple[str, ...] = ('fisher', 'random')
    tune: bool = False
    tune_points: Optional[int] = None
    tune_only: bool = False
    seeds: Tuple[int, ...] = (0,)
    methods: Optional[Tuple[str, ...]] = None
    selection_steps: int = 4
    num_workers: int = 2
    batch_size: Optional[int] = None
    gears_on_fine_tuned: bool = False
    bn_batches_per_gear: int = 4
    bn_max_batches: Optional[int] = None
    crop_size: Optional[Tuple[int, int]] = None
    distortion_space: Optional[dict] = None
    full_finetune_lr: float = 2e-3


# The protocol: fit on train_fit, tune every grid on train_tune, report
# on val, three seeds of each seeded method. Every grid point trains once
# (about 2-4 min each on 2 CPU cores, with its evaluation on the 61 tuning
# frames), and the seeds train again: several hours on a 2-core CPU, far
# over the 90 minutes of the goal; not run there so far.
FULL = BenchmarkProfile(
    tune=True,
    seeds=(0, 1, 2),
    curve_budgets=(),
    gears_on_fine_tuned=True,
)

PROFILES = {
    'full': FULL,
    # The same plus every scoring method at 0.2% and the budget curve of
    # every scoring method and of random selection (at the gear config's
    # values, one seed).
    'extended': replace(
        FULL,
        scorings=('fisher', 'rgn', 'weight_change'),
        curve_budgets=(0.0005, 0.002, 0.01),
        curve_scorings=('fisher', 'rgn', 'weight_change', 'random'),
    ),
    # A smoke run of every stage on a few frames: checks the machinery and
    # the output, not the accuracy.
    'quick': BenchmarkProfile(
        iters=3,
        base_iters=6,
        train_images=8,
        val_images=2,
        scorings=('fisher',),
        curve_budgets=(0.01,),
        tune=True,
        tune_points=1,
        gears_on_fine_tuned=True,
        selection_steps=1,
        num_workers=0,
        batch_size=2,
        bn_batches_per_gear=1,
        bn_max_batches=8,
    ),
}


def resolve_profile(profile, **overrides) -> Tuple[str, BenchmarkProfile]:
    """``(name, profile)`` of a profile name or object, with ``overrides``
    of its fields (None values ignored); the name lists the overrides."""
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(
                f'unknown profile {profile!r}; choose from {sorted(PROFILES)}'
            )
        name, profile = profile, PROFILES[profile]
    elif isinstance(profile, BenchmarkProfile):
        name = 'custom'
    else:
        raise TypeError(
            f'profile must be a name or a BenchmarkProfile, got {profile!r}'
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        profile = replace(profile, **overrides)
        name += ' with ' + ', '.join(
            f'{k}={_describe(v)}' for k, v in sorted(overrides.items())
        )
    return name, profile


def _describe(value) -> str:
    """A short text of a profile setting: a distortion space by its
    types and level counts."""
    if isinstance(value, dict) and 'distortions' in value:
        return '{%s}' % ', '.join(
            f'{name}: {len(levels)} levels'
            for name, levels in value['distortions'].items()
        )
    return str(value)
