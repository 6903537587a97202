"""The methods of the comparison, as data.

Each method is one :class:`Method`: which kind of stage makes its model
from the clean base and with which config and options. Adding a baseline
is one entry in :data:`METHODS` plus its config (a :data:`CONFIGS` line
and the file under ``configs/gearnn``); the run, the results file and the
report pick it up from here.
"""

import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple

from .provenance import REPO_ROOT

# Config keys: the clean base, gear training, and the other methods' own.
CONFIGS = dict(
    base='deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-240x320.py',
    gearnn='gearnn_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-'
    '240x320.py',
    gearnn_distill='gearnn-distill_deeplabv3plus_efficientnet-lite0_1xb8-300_'
    'camvid-240x320.py',
    mixed='mixed_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-240x320.py',
    stability='stability_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-'
    '240x320.py',
    online_bn='online-bn_deeplabv3plus_efficientnet-lite0_camvid-240x320.py',
    tent='tent_deeplabv3plus_efficientnet-lite0_camvid-240x320.py',
)
CONFIG_PATHS = {
    k: osp.join(REPO_ROOT, 'configs/gearnn', v) for k, v in CONFIGS.items()
}

# How a method's model is made from its base, each a stage of
# ``BenchmarkStages``.
KINDS = (
    'evaluate',  # the base as is, under its own config (e.g. test-time
    # adaptation of the base)
    'fine_tune',  # one model fine-tuned under ``config``
    'gears',  # one gear per level holding ``adaptor``
    'selected_gears',  # gears holding what ``scoring`` selects at the budget
)
GEAR_KINDS = ('gears', 'selected_gears')

# The gear learning rates every gear method tries on the tuning split.
# The first value of every grid is its config's default, so a profile
# with ``tune_points=1`` runs the defaults.
GEAR_LRS = {'optim_wrapper.optimizer.lr': (0.06, 0.02, 0.2)}


@dataclass(frozen=True)
class Method:
    """One method of the comparison.

    Args:
        name (str): its name in the results.
        kind (str): one of :data:`KINDS`.
        config (str): its config key; gear kinds take a gear config
            (``'gearnn'`` or ``'gearnn_*'``).
        adaptor (str, optional): what each gear holds, for ``'gears'``:
            ``'bn'`` or ``'all'``.
        scoring (str, optional): for ``'selected_gears'``, the scoring
            method; None takes the profile's first scoring.
        every_scoring (bool): also run the profile's other scorings, each
            as ``{name}_{scoring}``.
        options (dict): config options on top of its config.
        profile_options (dict): config options set from profile fields,
            ``{option: field}``.
        grid (dict): ``{option: values}`` tried on the tuning split when
            the profile tunes; the best mean there is reported on val.
            Every tuned method gets three points, the first its config's
            default. An option naming a
            transform (``'RandomDistortion.clean_prob'``) sets that
            argument of the training pipeline's transform.
        seeded (bool): run with every seed of the profile.
        candidate (bool): a gear recipe candidate: its tuning-split mean
            goes to the results' ``candidates`` table.
        base (str): the method whose model it starts from: ``'base'`` (the
            clean base) or a ``'fine_tune'`` method; its stages are then
            named ``on_{base}_...``.
        only_if (str, optional): a profile flag that must be set for it
            to run.
    """

    name: str
    kind: str
    config: str = 'gearnn'
    adaptor: Optional[str] = None
    scoring: Optional[str] = None
    every_scoring: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    profile_options: Mapping[str, str] = field(default_factory=dict)
    grid: Mapping[str, Tuple] = field(default_factory=dict)
    seeded: bool = False
    candidate: bool = False
    base: str = 'base'
    only_if: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f'method {self.name!r}: unknown kind {self.kind!r}; '
                f'choose from {KINDS}'
            )
        if self.kind == 'gears' and self.adaptor is None:
            raise ValueError(f'method {self.name!r}: gears need an adaptor')
        if self.kind in GEAR_KINDS and not self.config.startswith('gearnn'):
            raise ValueError(
                f'method {self.name!r}: gears train under a gear config '
                f"('gearnn' or 'gearnn_*'), not {self.config!r}"
            )
        for option, values in self.grid.items():
            if len(values) < 1:
                raise ValueError(
                    f'method {self.name!r}: grid option {option!r} has no '
                    'values'
                )
        # Only a selection fingerprints its own base for its stages' inputs.
        if self.base != 'base' and self.kind != 'selected_gears':
            raise ValueError(
                f'method {self.name!r}: only selected_gears methods start '
                "from another method's model"
            )


# In the order they run and are reported.
METHODS: Tuple[Method, ...] = (
    Method('clean', 'evaluate', config='base'),
    Method(
        'mixed_aug',
        'fine_tune',
        config='mixed',
        grid={'RandomDistortion.clean_prob': (1 / 21, 0.25, 0.5)},
        seeded=True,
    ),
    Method(
        'stability',
        'fine_tune',
        config='stability',
        grid={'model.alpha': (1.0, 0.3, 3.0)},
        seeded=True,
    ),
    Method('bn_stats', 'gears', adaptor='bn', grid=GEAR_LRS, seeded=True),
    Method(
        'full_finetune',
        'gears',
        adaptor='all',
        # Its gears hold every weight: rates far below the small gears'.
        profile_options={'optim_wrapper.optimizer.lr': 'full_finetune_lr'},
        grid={'optim_wrapper.optimizer.lr': (2e-3, 6e-4, 6e-3)},
    ),
    Method(
        'gearnn',
        'selected_gears',
        every_scoring=True,
        grid=GEAR_LRS,
        seeded=True,
        candidate=True,
    ),
    Method(
        'random_selection',
        'selected_gears',
        scoring='random',
        grid=GEAR_LRS,
        seeded=True,
    ),
    # Label-free test-time adaptation of the clean base on the test stream
    # (the sweep's batches, in order): the rivals a user would pick instead.
    Method(
        'online_bn',
        'evaluate',
        config='online_bn',
        grid={'model.momentum': (None, 0.1, 0.01)},
    ),
    Method(
        'tent',
        'evaluate',
        config='tent',
        grid={'model.optimizer.lr': (1e-3, 1e-4, 1e-2)},
    ),
    # Gear recipe candidates beside the paper's (gearnn): gears distilled
    # towards the base's prediction on the clean frame, several gears
    # trained per step, gears (plain and distilled) over the
    # mixed-augmentation model and gears over the stability-trained model.
    Method(
        'gearnn_distill',
        'selected_gears',
        config='gearnn_distill',
        grid={'model.distill_weight': (1.0, 0.5, 2.0)},
        seeded=True,
        candidate=True,
    ),
    # Several gears per step: each batch of 8 split into 4 pairs, each of
    # its own (type, level), so every gear gets 4 times the steps (of 2
    # frames) in the same iterations.
    Method(
        'gearnn_shared_steps',
        'selected_gears',
        options={'RandomDistortion.draw_every': 2},
        grid=GEAR_LRS,
        candidate=True,
    ),
    Method(
        'gearnn_on_mixed_aug',
        'selected_gears',
        base='mixed_aug',
        grid=GEAR_LRS,
        candidate=True,
        only_if='gears_on_fine_tuned',
    ),
    Method(
        'gearnn_distill_on_mixed_aug',
        'selected_gears',
        config='gearnn_distill',
        base='mixed_aug',
        grid={'model.distill_weight': (1.0, 0.5, 2.0)},
        seeded=True,
        candidate=True,
    ),
    Method(
        'gearnn_on_stability',
        'selected_gears',
        base='stability',
        grid=GEAR_LRS,
        candidate=True,
        only_if='gears_on_fine_tuned',
    ),
)

# The recipe candidate best on the tuning split, reported again as
# ``gearnn_recipe``; it must be seeded. Distilled gears over the
# mixed-augmentation model: 43.42 mean mIoU on the tuning split, against
# 42.77 for distilled gears on the clean base, 42.35 for plain gears over
# the mixed model and 41.90 for the paper's plain gears (default grid
# points, seed 0, 100 iterations; benchmarks/results/camvid.md).
RECIPE = 'gearnn_distill_on_mixed_aug'

# Every full run has these; the others depend on the profile.
REQUIRED_METHODS = tuple(m.name for m in METHODS if m.only_if is None)


def method_named(name: str, methods: Sequence[Method] = METHODS) -> Method:
    """The method called ``name``."""
    for method in methods:
        if method.name == name:
            return method
    raise KeyError(f'no method {name!r}; methods: {[m.name for m in methods]}')


def check_methods(methods: Sequence[Method]) -> None:
    """Raise ValueError unless names are unique and every method's base
    comes earlier as a fine-tuned model."""
    seen = {}
    for method in methods:
        if method.name in seen or method.name == 'base':
            raise ValueError(f'method name {method.name!r} used twice')
        if method.base != 'base':
            base = seen.get(method.base)
            if base is None or base.kind != 'fine_tune':
                raise ValueError(
                    f'method {method.name!r}: base {method.base!r} must be '
                    'an earlier fine_tune method'
                )
        seen[method.name] = method


def with_bases(names: Sequence[str], methods: Sequence[Method]):
    """``methods`` restricted to ``names`` and the methods they start from,
    in their order."""
    wanted = set(names)
    for name in names:
        method_named(name, methods)  # an unknown name is an error
    for method in reversed(methods):
        if method.name in wanted and method.base != 'base':
            wanted.add(method.base)
    return tuple(m for m in methods if m.name in wanted)
