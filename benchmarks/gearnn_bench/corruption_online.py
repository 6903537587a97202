"""A gear plus label-free online adaptation on CamVid-C: the recipe's
optional candidate, as cached stages.

Each frame runs on the gear its router picks, and on top of that gear
online BN (BN on each test batch's statistics) or TENT (entropy steps on
the BN weights and biases, carried along the stream) adapts, one adapted
state per gear (``OnlineBNSegmentor`` / ``TentSegmentor`` over the
recipe's ``DistilledGearNNSegmentor``, see
:class:`mmseg_gearnn.models.tta.TestTimeAdaptedSegmentor`).

Stage ``{recipe}_plus_{adaptation}@tune``: the recipe's gears over the
robust base, trained for the tuning split (the stage
``{recipe}@tune`` of :meth:`~.corruption_recipe.RecipeStages.recipe_gears`),
evaluated on the tuning split's trained sweep under ``adaptation``;
``none`` evaluates the plain gears in the same run, for the per-frame cost.
"""

import copy
import os.path as osp
import statistics
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

import torch
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, load_checkpoint
from mmseg.registry import MODELS

from .corruption_intervals import (
    AREAS_FILE,
    bootstrap,
    interval,
    load_frame_areas,
)
from .corruption_recipe import ROBUST_BASES

#: Config key a stage's options may set: the online adaptation over the
#: gear model (read, and removed, by :meth:`OnlineStages.adjust`).
ONLINE_KEY = 'corruption_online'
#: The candidates: the wrapper config each puts over the gear model
#: (None: the plain gears). The TTA rivals' settings: online BN on each
#: batch's statistics (``momentum=None``) or a moving estimate, TENT with
#: its authors' defaults (Adam, lr 1e-3, one step per batch, online).
ADAPTATIONS: Dict[str, Optional[dict]] = {
    'none': None,
    'online_bn': dict(type='OnlineBNSegmentor', momentum=None),
    'online_bn_m0.1': dict(type='OnlineBNSegmentor', momentum=0.1),
    'tent': dict(type='TentSegmentor'),
}

#: The optional CamVid-C method: the recipe (its robust base and routing
#: threshold as the tuning split chose them) with :data:`ONLINE_CHOICE` on
#: top of its gears, on val; run by ``camvid_c.py --optional-methods``.
ONLINE_METHOD = 'recipe_online_bn'
#: The tuning split's choice (light profile, 8 train_tune frames; margins
#: over the plain gears in the mean over the trained corruptions, paired
#: bootstrap 95% intervals): online BN with momentum 0.1, the one
#: candidate within 3x the plain gear's CPU time per frame that gained
#: outside its interval (gears over stability training: +0.62 [0.10,
#: 1.19], 1.3x; over mixed augmentation distilled from the clean model:
#: +0.44 [-0.15, 1.00], clean -0.38). Online BN on each batch's
#: statistics: +0.07 and +0.31, inside their intervals; TENT: +0.45
#: [-0.14, 1.01] and +0.77 [0.08, 1.40], at 3.4x the CPU time.
ONLINE_CHOICE = 'online_bn_m0.1'
#: The CamVid-C methods a run skips unless asked for: the candidate's
#: gain is inside its interval on the recipe the tuning split chose.
OPTIONAL_METHODS = (ONLINE_METHOD,)


def check_adaptation(name: str) -> Optional[dict]:
    """The wrapper config of adaptation ``name``; a clear error else."""
    if name not in ADAPTATIONS:
        raise ValueError(
            f'unknown online adaptation {name!r}; choose from '
            f'{sorted(ADAPTATIONS)}'
        )
    return copy.deepcopy(ADAPTATIONS[name])


def online_model(model: dict, adaptation: Optional[dict]) -> dict:
    """The model config ``model`` (a gear model) wrapped by the online
    adaptation ``adaptation`` (as in :data:`ADAPTATIONS`; None: as is)."""
    if adaptation is None:
        return model
    return dict(copy.deepcopy(adaptation), segmentor=model)


class OnlineStages:
    """The candidate's stages, mixed into ``CorruptionStages`` (whose
    ``adjust`` puts the gear table in place, then wraps the gear model as
    the options' :data:`ONLINE_KEY` asks)."""

    def online_name(
        self,
        adaptation: str,
        robust: str,
        seed: int = 0,
        teacher: str = 'base',
    ) -> str:
        """The stage name of the recipe's gears over ``robust`` (distilled
        from ``teacher``) plus ``adaptation``."""
        name = self.recipe_name(robust, seed, teacher)
        return f'{name}_plus_{adaptation}'

    def _finished_gears(self, base, robust, split, teacher):
        """The checkpoint and options (trained sweep) of the recipe's
        gears over ``robust`` from ``teacher``, for ``split``: a finished
        stage, never trained here (:func:`cached_only`)."""
        from .corruption_stages import SWEEP_KEY

        with cached_only(self.cache):
            _, ckpt, options = self.recipe_gears(
                base,
                split=split,
                robust=robust,
                robust_split='val',
                teacher=teacher,
            )
        return ckpt, dict(options, **{SWEEP_KEY: 'trained'})

    def recipe_online(
        self,
        base: str,
        adaptation: str,
        robust: str = 'stability',
        split: str = 'tune',
        teacher: str = 'base',
    ) -> dict:
        """Stage ``{recipe}_plus_{adaptation}[@split]``: the recipe's
        gears over ``robust``, distilled from ``teacher`` (trained for
        ``split``, the robust base for val as the tuning split's choice
        does) under ``adaptation``, on the trained sweep of ``split``. The
        gears' stages are reused, never trained here
        (:func:`cached_only`)."""
        wrapper = check_adaptation(adaptation)
        if robust not in ROBUST_BASES:
            raise ValueError(
                f'unknown robust base {robust!r}; choose from {ROBUST_BASES}'
            )
        ckpt, options = self._finished_gears(base, robust, split, teacher)
        if wrapper is not None:
            options[ONLINE_KEY] = wrapper
        return self.evaluated(
            self.online_name(adaptation, robust, teacher=teacher),
            'gearnn_distill',
            ckpt,
            options,
            split,
        )

    def recipe_with_online(
        self, base: str, seed: int = 0, adaptation: str = ONLINE_CHOICE
    ):
        """The recipe of ``seed`` (:meth:`recipe`: its robust base and
        threshold, chosen on the tuning split) with ``adaptation`` on top
        of its gears, on val: ``(entry, held, routing)`` as the recipe's,
        ``held`` the untrained sweep under the chosen threshold (frames
        the router sends to no gear adapt the robust base)."""
        from .corruption_stages import SWEEP_KEY

        wrapper = check_adaptation(adaptation)
        routing = self.recipe(base, seed)[2]
        robust = routing['robust_base']['robust']
        teacher = routing['robust_base'].get('teacher', 'base')
        threshold = routing['choice']['threshold']
        _, ckpt, options = self.recipe_gears(
            base, seed, robust=robust, teacher=teacher
        )
        options = dict(options, **{ONLINE_KEY: wrapper})
        name = self.online_name(adaptation, robust, seed, teacher)
        entry = self.evaluated(
            name,
            'gearnn_distill',
            ckpt,
            dict(options, **{SWEEP_KEY: 'trained'}),
        )
        held = self.recipe_untrained(name, ckpt, options, threshold)
        return (
            entry,
            held,
            dict(
                adaptation=adaptation,
                threshold=threshold,
                robust_base=robust,
                teacher=teacher,
                stages=[name, f'{name}_t{threshold:g}_untrained'],
            ),
        )

    def online_margins(
        self,
        adaptations: List[str],
        robust: str = 'stability',
        split: str = 'tune',
        draws: int = 1000,
        teacher: str = 'base',
    ) -> dict:
        """Each adaptation's margin over the plain gears (stage ``none``)
        in mean mIoU over the trained corruptions x severities and in
        clean mIoU, with its 95% bootstrap interval over the evaluated
        frames (paired: the same frames drawn for both)."""
        from .stages import stage_name

        names = ['none'] + [a for a in adaptations if a != 'none']
        runs = {}
        for name in names:
            stage = stage_name(
                self.online_name(name, robust, teacher=teacher), split
            )
            eval_dir = 'eval' if split == 'val' else f'eval_{split}'
            path = osp.join(self.work_dir, stage, eval_dir, AREAS_FILE)
            runs[name] = [load_frame_areas([path])]
        p = self.corruption_profile
        values = bootstrap(runs, p.trained, (), draws=draws)
        margins = {}
        for name in names[1:]:
            margins[name] = {}
            for measure, key in (('mPC', 'mean'), ('P', 'clean')):
                diff = values[name][measure] - values['none'][measure]
                margins[name][key] = dict(
                    value=round(float(diff[0]), 2),
                    interval=list(interval(diff)),
                )
        return dict(draws=draws, frames='paired bootstrap', margins=margins)

    def online_cost(
        self,
        base: str,
        adaptations: List[str],
        robust: str = 'stability',
        split: str = 'tune',
        rounds: int = 6,
        teacher: str = 'base',
    ) -> dict:
        """Model-only cost per frame of each adaptation over the gears,
        against the plain gears in the same process: ``predict`` of one
        batch of the sweep (the first corrupted condition, on its gear),
        each round timing a pair (adapted, plain) in alternating order;
        the median over rounds of the CPU-time ratio (as
        ``benchmarks/tta_cost.py``)."""
        init_default_scope('mmseg')
        ckpt, options = self._finished_gears(base, robust, split, teacher)
        name = self.online_name('cost', robust, teacher=teacher)
        stage_dir = osp.join(self.work_dir, name)
        models = {}
        for name in ['none'] + [a for a in adaptations if a != 'none']:
            wrapper = check_adaptation(name)
            opts = dict(options)
            if wrapper is not None:
                opts[ONLINE_KEY] = wrapper
            cfg = self._cfg('gearnn_distill', stage_dir, None, opts, split)
            model = MODELS.build(cfg.model)
            load_checkpoint(model, ckpt, map_location='cpu', strict=True)
            models[name] = model.eval()
        loader = Runner.build_dataloader(cfg.test_dataloader)
        batches = iter(loader)
        next(batches)  # the clean frames
        data = models['none'].data_preprocessor(next(batches), False)

        def predict(name):
            wall, cpu = time.perf_counter(), time.process_time()
            with torch.no_grad():
                models[name].predict(data['inputs'], data['data_samples'])
            return time.perf_counter() - wall, time.process_time() - cpu

        frames = data['inputs'].shape[0]
        for name in models:  # warm-up
            predict(name)
        result = dict(
            threads=torch.get_num_threads(),
            batch=frames,
            rounds=rounds,
            methods={},
        )
        plain_all = []
        for name in models:
            if name == 'none':
                continue
            pairs = []
            for i in range(rounds):
                if i % 2:
                    pairs.append((predict(name), predict('none')))
                else:
                    plain = predict('none')
                    pairs.append((predict(name), plain))
            plain_all += [p for _, p in pairs]
            ratios = sorted(a[1] / p[1] for a, p in pairs)
            result['methods'][name] = dict(
                cpu_s_per_frame=round(
                    statistics.median(a[1] for a, _ in pairs) / frames, 4
                ),
                ratio_to_plain_gear=round(statistics.median(ratios), 3),
                ratio_min=round(ratios[0], 3),
                ratio_max=round(ratios[-1], 3),
            )
        if plain_all:
            result['plain_gear_cpu_s_per_frame'] = round(
                statistics.median(p[1] for p in plain_all) / frames, 4
            )
        return result


@contextmanager
def cached_only(cache) -> Iterator[None]:
    """Within it, a stage of ``cache`` that would run (not cached with
    these inputs) is refused: the candidate reuses the recipe's trained
    gears and never trains them again."""
    run = cache.run

    def reuse(stage, inputs, fn):
        def refuse(stage_dir):
            raise RuntimeError(
                f'stage {stage} is not cached with these inputs in '
                f'{cache.work_dir}: run the CamVid-C benchmark (the recipe '
                'on the tuning split) there first'
            )

        return run(stage, inputs, refuse)

    cache.run = reuse  # shadows the method on this instance
    try:
        yield
    finally:
        del cache.run


__all__ = [
    'ADAPTATIONS',
    'ONLINE_CHOICE',
    'ONLINE_KEY',
    'ONLINE_METHOD',
    'OPTIONAL_METHODS',
    'OnlineStages',
    'cached_only',
    'check_adaptation',
    'online_model',
]
