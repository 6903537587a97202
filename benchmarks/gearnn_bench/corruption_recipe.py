"""The recipe on CamVid-C, as cached stages.

``gearnn_recipe``: gears over the robust base (the model fine-tuned by
mixed augmentation on the trained corruptions, the choice of the 20-level
benchmark's tuning split), distilled towards that base's prediction on the
clean frame (``DistilledGearNNSegmentor``), plus a clean gear (the identity
level of :data:`~.corruption_profile.CLEAN_GEAR_LEVEL`) that clean frames
run on, to win back clean accuracy. Routing is the ``ConfidentGearRouter``:
the trained corruptions by their metadata, the others by the distortion
estimator when it is confident, else the robust base with no gear; its
threshold is chosen on the tuning split (:mod:`.corruption_routing`).
"""

import os.path as osp

import torch

from mmseg_gearnn.distortions import build_space
from mmseg_gearnn.selection import file_fingerprint, run_selection_from_config

from .corruption_profile import CLEAN_GEAR_LEVEL

RECIPE = 'gearnn_recipe'


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

    def recipe_options(self, seed: int = 0) -> dict:
        """The recipe gear stage's options (trained sweep, its gear table
        with the clean gear, metadata routing through its router)."""
        from .corruption_stages import CLEAN_GEAR_KEY, MAPPING_KEY, SWEEP_KEY

        return {
            SWEEP_KEY: 'trained',
            MAPPING_KEY: self.corruption_profile.gear_mappings[0],
            CLEAN_GEAR_KEY: True,
            'model.router': self.recipe_router(0.0),
            **seed_options(seed),
        }

    def robust_base(self, base: str, seed: int = 0, split: str = 'val'):
        """The recipe's robust base: mixed augmentation of ``seed`` (its
        stage, ``mixed_aug[_seedN]``, also the reported method); on the
        tuning split (``split='tune'``), evaluated on the trained sweep."""
        from .corruption_stages import SWEEP_KEY

        name = 'mixed_aug' + seed_suffix(seed)
        options = seed_options(seed)
        if split != 'val':
            options[SWEEP_KEY] = 'trained'
        self.fine_tuned(name, 'mixed', base, options, split)
        return self.fine_tuned_checkpoint(name, split)

    def recipe_gears(self, base: str, seed: int = 0, split: str = 'val'):
        """Stage ``gearnn_recipe[_seedN]``: the recipe's gears trained over
        the robust base, evaluated on the trained sweep (clean frames on
        the clean gear) of ``split``; returns (entry, checkpoint,
        options)."""
        robust = self.robust_base(base, seed, split)
        suffix = seed_suffix(seed)
        name = RECIPE + suffix
        options = self.recipe_options(seed)
        robust_sha256 = file_fingerprint(robust)['sha256']
        picked = self.recipe_selection(robust, robust_sha256, suffix)
        entry = self.gears(
            name,
            robust,
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

    def recipe_selection(self, robust: str, robust_sha256: str, suffix):
        """Stage ``on_mixed_aug{suffix}_selection_fisher_{budget}``: the
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
            f'on_mixed_aug{suffix}_selection_fisher_{budget:g}',
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
        """The recipe of ``seed``: ``(entry, held, routing)`` with ``held``
        the untrained sweep under the chosen threshold; ``routing`` holds
        the threshold's choice and the held-out sweep without fallback."""
        entry, ckpt, options = self.recipe_gears(base, seed)
        name = RECIPE + seed_suffix(seed)
        no_fallback = self.recipe_untrained(name, ckpt, options, 0.0)
        choice = self.routing_threshold(name, ckpt, options)
        held = self.recipe_untrained(name, ckpt, options, choice['threshold'])
        return entry, held, dict(choice=choice, no_fallback=no_fallback)

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


__all__ = ['RECIPE', 'RecipeStages', 'seed_options', 'seed_suffix']
