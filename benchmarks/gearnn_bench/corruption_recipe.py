"""The recipe on CamVid-C, as cached stages.

``gearnn_recipe``: gears over a robust base (the model fine-tuned on the
trained corruptions by mixed augmentation or stability training), distilled
towards a teacher's prediction on the clean frame
(``DistilledGearNNSegmentor``: the robust base itself, or the clean-trained
model), plus a clean gear (the identity level of
:data:`~.corruption_profile.CLEAN_GEAR_LEVEL`) that clean frames run on, to
win back clean accuracy; base and teacher are chosen on the tuning split.
Routing is the ``ConfidentGearRouter``: the trained corruptions by their
metadata, the others by the distortion estimator when it is confident, else
the robust base with no gear; its threshold is chosen on the tuning split
(:mod:`.corruption_routing`).
"""

import os.path as osp
from typing import Optional

import torch

from mmseg_gearnn.distortions import build_space
from mmseg_gearnn.selection import file_fingerprint, run_selection_from_config

from .corruption_profile import CLEAN_GEAR_LEVEL

RECIPE = 'gearnn_recipe'
# The robust bases the recipe can sit on: the reported method whose model
# it is, and that model's stage name (without a seed suffix).
ROBUST_BASES = ('mixed_aug', 'stability')
# Whose clean prediction the gears learn: the robust base's own, or the
# clean-trained model's (the benchmark's clean base).
TEACHERS = ('base', 'clean')


def seed_options(seed: int) -> dict:
    """Config options of a training seed (0: the configs' own)."""
    return {'randomness.seed': seed} if seed else {}


def seed_suffix(seed: int) -> str:
    return f'_seed{seed}' if seed else ''


class RecipeStages:
    """The recipe's stages, mixed into ``CorruptionStages`` (which gives
    the cache, the configs, the estimator and the untrained sweep)."""

    def recipe_router(self, threshold: float) -> dict:
        """The recipe's router config at ``threshold``."""
        p = self.corruption_profile
        mapping = p.gear_mappings[0]
        est = self.estimator(mapping)
        space = build_space(p.gear_space(mapping, clean_gear=True))
        return dict(
            type='ConfidentGearRouter',
            threshold=threshold,
            clean_gear=space.gear_id(*CLEAN_GEAR_LEVEL),
            estimator=est['file'],
        )

    def recipe_options(
        self, seed: int = 0, teacher: str = 'base', clean_model=None
    ) -> dict:
        """The recipe gear stage's options (trained sweep, its gear table
        with the clean gear, metadata routing through its router, the
        clean model ``clean_model`` as teacher if ``teacher='clean'``)."""
        from .corruption_stages import CLEAN_GEAR_KEY, MAPPING_KEY, SWEEP_KEY

        if teacher not in TEACHERS:
            raise ValueError(
                f'unknown teacher {teacher!r}; choose from {TEACHERS}'
            )
        options = {
            SWEEP_KEY: 'trained',
            MAPPING_KEY: self.corruption_profile.gear_mappings[0],
            CLEAN_GEAR_KEY: True,
            'model.router': self.recipe_router(0.0),
            **seed_options(seed),
        }
        if teacher == 'clean':
            options['model.teacher_checkpoint'] = osp.abspath(clean_model)
        return options

    def robust_base(
        self,
        base: str,
        seed: int = 0,
        split: str = 'val',
        robust: str = 'mixed_aug',
    ):
        """The recipe's robust base: the model of ``robust`` (mixed
        augmentation or stability training) of ``seed``, its stage that of
        the reported method; on the tuning split (``split='tune'``),
        trained again and evaluated on the trained sweep."""
        from .corruption_stages import SWEEP_KEY

        p = self.corruption_profile
        if robust not in ROBUST_BASES:
            raise ValueError(
                f'unknown robust base {robust!r}; choose from {ROBUST_BASES}'
            )
        options = seed_options(seed)
        if robust == 'mixed_aug':
            name, key = 'mixed_aug', 'mixed'
        else:
            name, key = f'stability_alpha{p.alpha:g}', 'stability'
            options['model.alpha'] = p.alpha
        name += seed_suffix(seed)
        if split != 'val':
            options[SWEEP_KEY] = 'trained'
        self.fine_tuned(name, key, base, options, split)
        return self.fine_tuned_checkpoint(name, split)

    def recipe_name(
        self, robust: str = 'mixed_aug', seed: int = 0, teacher: str = 'base'
    ) -> str:
        """The stage name of the recipe's gears over ``robust``."""
        on = '' if robust == 'mixed_aug' else f'_on_{robust}'
        taught = '' if teacher == 'base' else f'_{teacher}_teacher'
        return RECIPE + on + taught + seed_suffix(seed)

    def recipe_gears(
        self,
        base: str,
        seed: int = 0,
        split: str = 'val',
        robust: str = 'mixed_aug',
        robust_split: Optional[str] = None,
        teacher: str = 'base',
    ):
        """Stage ``gearnn_recipe[_on_{robust}][_{teacher}_teacher][_seedN]``:
        the recipe's gears trained over the robust base (trained for
        ``robust_split``, default ``split``) towards ``teacher``'s clean
        prediction, evaluated on the trained sweep (clean frames on the
        clean gear) of ``split``; returns (entry, checkpoint, options)."""
        ckpt = self.robust_base(base, seed, robust_split or split, robust)
        suffix = seed_suffix(seed)
        name = self.recipe_name(robust, seed, teacher)
        options = self.recipe_options(seed, teacher, base)
        robust_sha256 = file_fingerprint(ckpt)['sha256']
        prefix = 'on_mixed_aug' if robust == 'mixed_aug' else f'on_{robust}'
        picked = self.recipe_selection(ckpt, robust_sha256, prefix + suffix)
        entry = self.gears(
            name,
            ckpt,
            picked['file'],
            selection=dict(
                scoring='fisher',
                budget=self.profile.budget,
                sha256=picked['sha256'],
                file=picked['file'],
            ),
            base_sha256=robust_sha256,
            options=options,
            key='gearnn_distill',
            split=split,
        )
        options = dict(options, **{'model.adaptor': picked['file']})
        return entry, self.fine_tuned_checkpoint(name, split), options

    def recipe_selection(self, robust: str, robust_sha256: str, prefix):
        """Stage ``{prefix}_selection_fisher_{budget}``: the
        Fisher selection at the budget on the robust base, scored over the
        recipe's gear table (its clean gear's identity level included)."""
        from .corruption_stages import CLEAN_GEAR_KEY

        budget = self.profile.budget
        options = {CLEAN_GEAR_KEY: True}

        def run(stage_dir):
            out = osp.join(stage_dir, 'selection.json')
            record = run_selection_from_config(
                self._cfg('base', stage_dir, None, options),
                robust,
                'fisher',
                config_path=self.configs['base'],
                budget=budget,
                steps=self.profile.selection_steps,
                out=out,
                device='cuda' if torch.cuda.is_available() else 'cpu',
            )
            return dict(
                file=osp.abspath(out),
                sha256=file_fingerprint(out)['sha256'],
                num_tensors=len(record['selected']),
                used_fraction=record['budget']['used_fraction'],
            )

        return self.cache.run(
            f'{prefix}_selection_fisher_{budget:g}',
            self._inputs(
                robust_sha256,
                method='selection',
                config=self._config_digest('base', options),
                scoring='fisher',
                budget=budget,
                steps=self.profile.selection_steps,
                excluded_modules='training-only',
            ),
            run,
        )

    def recipe(self, base: str, seed: int = 0):
        """The recipe of ``seed`` over the robust base and teacher chosen
        on the tuning split (:meth:`choose_robust_base`): ``(entry, held,
        routing)`` with ``held`` the untrained sweep under the chosen
        threshold; ``routing`` holds the threshold's choice, the held-out
        sweep without fallback, the robust base's choice and the stage
        names."""
        robust = self.choose_robust_base(base)
        entry, ckpt, options = self.recipe_gears(
            base, seed, robust=robust['robust'], teacher=robust['teacher']
        )
        name = self.recipe_name(robust['robust'], seed, robust['teacher'])
        no_fallback = self.recipe_untrained(name, ckpt, options, 0.0)
        choice = self.routing_threshold(name, ckpt, options)
        held = self.recipe_untrained(name, ckpt, options, choice['threshold'])
        return (
            entry,
            held,
            dict(
                choice=choice,
                no_fallback=no_fallback,
                robust_base=robust,
                stages=[name, f'{name}_t{choice["threshold"]:g}_untrained'],
            ),
        )

    def choose_robust_base(self, base: str) -> dict:
        """The robust base and teacher of the recipe, chosen on the tuning
        split: for each of :data:`ROBUST_BASES` x :data:`TEACHERS`, the
        recipe's gears (seed 0) trained over that model (trained on
        ``train_fit`` as for val) and evaluated on the tuning split's
        trained sweep; the higher mean wins (ties: the first)."""
        from .corruption_stages import SWEEP_KEY

        means, candidates = {}, []
        for robust in ROBUST_BASES:
            for teacher in TEACHERS:
                if robust == 'mixed_aug' and teacher == 'base':
                    # The val run's gears, evaluated on the tuning split.
                    entry, gears, options = self.recipe_gears(base)
                    entry = self.evaluated(
                        f'{self.recipe_name(robust)}_eval',
                        'gearnn_distill',
                        gears,
                        dict(options, **{SWEEP_KEY: 'trained'}),
                        'tune',
                    )
                else:
                    entry = self.recipe_gears(
                        base,
                        split='tune',
                        robust=robust,
                        robust_split='val',
                        teacher=teacher,
                    )[0]
                key = robust if teacher == 'base' else f'{robust}, {teacher}'
                candidates.append((key, robust, teacher))
                means[key] = dict(
                    tune_mean=round(entry['mean_miou'], 2),
                    tune_clean=round(entry['clean_miou'], 2),
                )
        key, robust, teacher = max(
            candidates, key=lambda c: means[c[0]]['tune_mean']
        )
        return dict(
            robust=robust,
            teacher=teacher,
            candidates=means,
            rule='gears over each robust base, distilled from it or from '
            'the clean model ("clean"; seed 0), mean mIoU over the '
            'trained corruptions x severities on the tuning split',
        )

    def recipe_untrained(self, name, ckpt, options, threshold):
        """The recipe on the untrained sweep at ``threshold``; stage
        ``{name}_untrained_t{threshold}``."""
        return self.untrained(
            f'{name}_t{threshold:g}',
            ckpt,
            options,
            None,
            key='gearnn_distill',
            routing={'model.router': self.recipe_router(threshold)},
        )

    def per_gear_batches(self, iters: int, clean_gear: bool) -> dict:
        """Expected training batches of each gear of the first mapping:
        one gear per batch, drawn uniformly."""
        from .corruption_profile import gear_count

        p = self.corruption_profile
        gears = gear_count(p, p.gear_mappings[0], clean_gear)
        return dict(
            gears=gears,
            iters=iters,
            per_gear=round(iters / gears, 2),
        )


__all__ = [
    'RECIPE',
    'RecipeStages',
    'TEACHERS',
    'seed_options',
    'seed_suffix',
]
