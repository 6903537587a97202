"""The stages every benchmark method is built from, each cached.

A stage trains or evaluates one model from the shared clean base:

=================  ===================================================
``train_base``     the clean base: given, kept from an earlier run or
                   trained (never silently replaced)
``evaluate_model`` a trained model evaluated as is
``fine_tuned``     one model fine-tuned from the base under a config
``gears``          one gear per level holding an adaptor ('bn', 'all' or
                   a selection JSON)
``select``         a selection JSON of a scoring method under a budget
``selected_gears`` ``select`` then ``gears``
=================  ===================================================

An evaluation on ``val`` may also keep each frame's class areas
(``frame_areas=True``: ``<stage>/eval/frame_areas.npz``, see
:mod:`.corruption_intervals`), from which the goals' bootstrap intervals
over frames are drawn.

Each stage keeps its result in ``work_dir/<stage>/result.json`` together
with what it depended on (data, base, profile, and its config as loaded,
bases included), so a second run resumes where the first stopped and
redoes a stage only when its inputs changed. The base itself is kept once
trained: delete ``work_dir/base`` to train it again. Library code is not
part of the inputs.
"""

import hashlib
import json
import os
import os.path as osp
import time
from typing import Dict, Iterable, Optional

import torch
from mmengine.config import Config

from mmseg_gearnn.apis import evaluate_levels, train
from mmseg_gearnn.selection import (
    file_fingerprint,
    reselect,
    run_selection_from_config,
)
from mmseg_gearnn.utils import atomic_write

from .cache import StageCache
from .corruption_intervals import AREAS_FILE, add_frame_areas_hook
from .profiles import resolve_profile
from .stage_config import profiled_config, set_splits, stage_config
from .tuning import split_files

SPLIT = 'val'
# The tuning split (frames of ``train``, see :mod:`.tuning`).
TUNE_SPLIT = 'tune'
# Configs the stages themselves need: the clean base (also what selection
# scores) and the gear config.
STAGE_CONFIGS = ('base', 'gearnn')


def _method_entry(report: dict, adaptor_fraction: float, num_gears: int):
    """The results-file entry of one evaluated method."""
    return dict(
        mean_miou=report['mean_distorted'],
        clean_miou=report['clean'],
        memory_ratio=1.0 + (num_gears - 1) * adaptor_fraction,
        adaptor_fraction=adaptor_fraction,
        levels=report['levels'],
    )


def stage_name(name: str, split: str = SPLIT) -> str:
    """A stage's name: ``name`` for ``val``, ``name@{split}`` else."""
    return name if split == SPLIT else f'{name}@{split}'


class BenchmarkStages:
    """The cached stages on one CamVid-layout folder and one clean base.

    Args:
        data_root (str): a CamVid-layout folder (``train``,
            ``trainannot``, ``val``, ``valannot``).
        work_dir (str): where stages train, evaluate and cache.
        configs (dict): config paths by key: ``base`` (the clean model),
            ``gearnn`` (gear training) and any other a stage is asked to
            run.
        profile (BenchmarkProfile | str): how much to run.
        base_checkpoint (str, optional): a trained base to use instead of
            training one.
        required_configs (Iterable[str]): keys ``configs`` must hold.
        frame_areas (bool): every evaluation on ``val`` also keeps each
            frame's class areas (:meth:`frame_areas_file`); its stages
            record it among their inputs, so that a stage cached without
            them runs again.
    """

    def __init__(
        self,
        data_root: str,
        work_dir: str,
        configs: Dict[str, str],
        profile='full',
        base_checkpoint: Optional[str] = None,
        required_configs: Iterable[str] = STAGE_CONFIGS,
        frame_areas: bool = False,
    ) -> None:
        self.frame_areas = frame_areas
        self.data_root = osp.abspath(data_root)
        for sub in ('train', 'trainannot', SPLIT, SPLIT + 'annot'):
            if not osp.isdir(osp.join(self.data_root, sub)):
                raise FileNotFoundError(
                    f'{data_root} is not a CamVid-layout folder: it lacks '
                    f'{sub}/ (needs train/, trainannot/, {SPLIT}/ and '
                    f'{SPLIT}annot/)'
                )
        missing = set(required_configs) - set(configs)
        if missing:
            raise ValueError(f'configs lacks {sorted(missing)}')
        for name, path in configs.items():
            if not osp.isfile(path):
                raise FileNotFoundError(f'{name} config not found: {path}')
        self.profile_name, profile = resolve_profile(profile)
        if base_checkpoint is not None and not osp.isfile(base_checkpoint):
            raise FileNotFoundError(
                f'base checkpoint not found: {base_checkpoint}'
            )
        self.profile = profile
        self.work_dir = work_dir
        self.configs = configs
        self.base_checkpoint = base_checkpoint
        self.cache = StageCache(work_dir)
        # The fit and tune lists of the tuning split, when the profile tunes.
        self.splits = None
        if profile.tune:
            self.splits = split_files(
                self.data_root, osp.join(work_dir, 'splits')
            )

    # -- configs and inputs -----------------------------------------------

    def _cfg(
        self, key: str, stage_dir: str, iters, options=None, split=SPLIT
    ) -> Config:
        cfg = stage_config(
            self.configs[key],
            stage_dir,
            self.data_root,
            self.profile,
            iters,
            options,
        )
        if self.splits is not None:
            set_splits(
                cfg,
                self.splits['fit_file'],
                split,
                self.splits['tune_file'],
            )
        elif split != SPLIT:
            raise ValueError(
                f'split {split!r} needs a profile that tunes (tune=True)'
            )
        return cfg

    def _training_cfg(self, key, stage_dir, iters, options=None) -> Config:
        """A training stage's config, without the clean validation at its
        end: every model is evaluated by the sweep, clean included."""
        cfg = self._cfg(key, stage_dir, iters, options)
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        return cfg

    def _config_digest(self, key: str, options: Optional[dict] = None):
        """sha256 of config ``key`` as loaded (its bases included) with
        ``options`` and the profile's resolution and space: editing a
        config reruns the stages that use it."""
        cfg = profiled_config(self.configs[key], self.profile, options)
        text = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _inputs(self, base_sha256: Optional[str] = None, **extra) -> dict:
        """What a stage's result depends on: the data, the base, the
        profile's settings that every stage shares, and ``extra``; lists of
        other stages (budgets, scorings, grid values) stay out, so that
        adding a budget reruns nothing else."""
        p = self.profile
        inputs = dict(
            data_root=self.data_root,
            base=base_sha256 or getattr(self, 'base_sha256', None),
            iters=p.iters,
            train_images=p.train_images,
            val_images=p.val_images,
            num_workers=p.num_workers,
            batch_size=p.batch_size,
            **self._split_inputs(),
        )
        inputs.update(extra)
        return inputs

    def _evaluation_inputs(self, split: str) -> dict:
        """What an evaluating stage on ``split`` adds to its inputs: the
        split off ``val``, the frame areas kept on ``val``."""
        if split != SPLIT:
            return dict(split=split)
        return dict(frame_areas=AREAS_FILE) if self.frame_areas else {}

    def frame_areas_file(self, stage: str) -> str:
        """The frame areas of stage ``stage``'s evaluation on ``val``."""
        return osp.join(self.work_dir, stage, 'eval', AREAS_FILE)

    def _split_inputs(self) -> dict:
        """The fitting frames a training stage reads, when the profile
        tunes (else all of train, as before tuning existed)."""
        if self.splits is None:
            return {}
        return dict(train_split=self.splits['sha256']['fit'])

    # -- the base ---------------------------------------------------------

    def train_base(self) -> str:
        """The clean base checkpoint: given, cached or trained.

        A trained base records what it was trained from in
        ``base/inputs.json``; a base from other inputs (an edited config,
        other data or iterations) is an error, not silently reused, and is
        never deleted.
        """
        if self.base_checkpoint is not None:
            ckpt = self.base_checkpoint
            self.cache.record('base', None, reused=True)
        else:
            stage_dir = osp.join(self.work_dir, 'base')
            cfg = self._training_cfg(
                'base', stage_dir, self.profile.base_iters
            )
            final = osp.join(stage_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
            time_file = osp.join(stage_dir, 'time.json')
            self._check_base_inputs(stage_dir)
            reused = osp.isfile(final)
            start = time.time()
            ckpt = train(cfg, stage_dir)
            if not reused:
                atomic_write(
                    time_file,
                    json.dumps(dict(time_s=round(time.time() - start, 1))),
                )
            time_s = None
            if osp.isfile(time_file):
                with open(time_file, encoding='utf-8') as f:
                    time_s = json.load(f)['time_s']
            self.cache.record('base', time_s, reused=reused)
        self.base_sha256 = file_fingerprint(ckpt)['sha256']
        return ckpt

    def _base_inputs(self) -> dict:
        p = self.profile
        return dict(
            config=self._config_digest('base'),
            data_root=self.data_root,
            base_iters=p.base_iters,
            train_images=p.train_images,
            batch_size=p.batch_size,
            **self._split_inputs(),
        )

    def _check_base_inputs(self, stage_dir: str) -> None:
        """Record the base's inputs before it trains (so that a resumed run
        is checked too); raise if ``stage_dir`` holds another base."""
        inputs = json.loads(json.dumps(self._base_inputs()))
        inputs_file = osp.join(stage_dir, 'inputs.json')
        if osp.isfile(inputs_file):
            with open(inputs_file, encoding='utf-8') as f:
                recorded = json.load(f)
            changed = sorted(
                k
                for k in set(inputs) | set(recorded)
                if inputs.get(k) != recorded.get(k)
            )
            if changed:
                raise RuntimeError(
                    f'{stage_dir} holds a base trained from other inputs '
                    f'(changed: {", ".join(changed)}); move it away or give '
                    'another work dir to train a new one (nothing was '
                    'deleted)'
                )
        elif osp.isdir(stage_dir) and os.listdir(stage_dir):
            raise RuntimeError(
                f'{stage_dir} holds a base with no record of its inputs '
                '(written by an older version), so it cannot be checked '
                'against the current config; move it away or give another '
                'work dir, or pass its checkpoint as the base checkpoint'
            )
        else:
            os.makedirs(stage_dir, exist_ok=True)
            atomic_write(inputs_file, json.dumps(inputs, indent=2))

    # -- stages -----------------------------------------------------------

    def evaluate(
        self,
        key: str,
        checkpoint: str,
        stage_dir: str,
        options=None,
        split: str = SPLIT,
    ) -> dict:
        """Per-level report of ``checkpoint`` under config ``key`` on
        ``split`` plus its memory accounting and its evaluation's wall time
        per frame (``eval_s_per_frame``: model building and data loading
        included, as for every method)."""
        eval_dir = 'eval' if split == SPLIT else f'eval_{split}'
        cfg = self._cfg(
            key, osp.join(stage_dir, eval_dir), None, options, split
        )
        if self.frame_areas and split == SPLIT:
            add_frame_areas_hook(cfg)
        start = time.time()
        report, model = evaluate_levels(
            cfg, checkpoint, cfg.work_dir, return_model=True
        )
        seconds = time.time() - start
        model = getattr(model, 'module', model)
        if hasattr(model, 'adaptor_fraction'):
            fraction = model.adaptor_fraction()
            num_gears = model.gear_bank.num_gears
        else:
            fraction, num_gears = 0.0, 1
        entry = _method_entry(report, fraction, num_gears)
        conditions = 1 + sum(len(v) for v in report['levels'].values())
        frames = conditions * self._eval_images(split)
        entry['eval_s_per_frame'] = round(seconds / frames, 4)
        return entry

    def _eval_images(self, split: str) -> int:
        """How many frames of ``split`` an evaluation sweeps."""
        if split == SPLIT:
            names = os.listdir(osp.join(self.data_root, SPLIT))
            count = len([n for n in names if not n.startswith('.')])
        else:
            count = self.splits['tune_frames']
        subset = self.profile.val_images
        if subset is None:
            return count
        return min(count, subset if isinstance(subset, int) else len(subset))

    def evaluate_model(
        self,
        name: str,
        key: str,
        checkpoint: str,
        options=None,
        split: str = SPLIT,
    ) -> dict:
        """Stage ``name``: ``checkpoint`` (the base, whose fingerprint is
        in every stage's inputs) evaluated as is under config ``key`` with
        ``options``, on ``split``."""
        return self.evaluated(
            name, key, checkpoint, options, split, fingerprint=False
        )

    def evaluated(
        self,
        name: str,
        key: str,
        checkpoint: str,
        options=None,
        split: str = SPLIT,
        fingerprint: bool = True,
    ) -> dict:
        """Stage ``name``: a model another stage trained (``checkpoint``,
        fingerprinted) evaluated under config ``key`` with ``options``,
        on ``split``; e.g. the tuning split's best model, on val."""
        options = dict(options or {})
        inputs = self._inputs(
            method=name, config=self._config_digest(key, options)
        )
        if fingerprint:
            inputs['checkpoint'] = file_fingerprint(checkpoint)['sha256']
        if options:
            inputs['options'] = options
        inputs.update(self._evaluation_inputs(split))
        return self.cache.run(
            stage_name(name, split),
            inputs,
            lambda d: self.evaluate(key, checkpoint, d, options, split),
        )

    def fine_tuned(
        self, name: str, key: str, base: str, options=None, split=SPLIT
    ):
        """A single model fine-tuned from the base (mixed_aug, stability),
        evaluated on ``split``; the stage is ``name@{split}`` off val."""
        options = dict(options or {})
        run = self._trained_and_evaluated(key, base, options, split)
        inputs = self._inputs(
            method=name,
            options=options,
            config=self._config_digest(key, options),
        )
        inputs.update(self._evaluation_inputs(split))
        return self.cache.run(stage_name(name, split), inputs, run)

    def _trained_and_evaluated(self, key, base, options, split):
        """A stage's work: train from ``base`` under config ``key`` with
        ``options`` in the stage dir, then evaluate on ``split``."""

        def run(stage_dir):
            ckpt = train(
                self._training_cfg(
                    key,
                    stage_dir,
                    self.profile.iters,
                    dict(options, load_from=base),
                ),
                stage_dir,
                reuse=False,
            )
            return self.evaluate(key, ckpt, stage_dir, options, split)

        return run

    def fine_tuned_checkpoint(self, name: str, split: str = SPLIT) -> str:
        """The checkpoint that stage ``name`` of :meth:`fine_tuned` (or
        :meth:`gears`) trained for ``split``."""
        return osp.join(
            self.work_dir,
            stage_name(name, split),
            f'iter_{self.profile.iters}.pth',
        )

    def gears(
        self,
        name: str,
        base: str,
        adaptor: str,
        selection=None,
        base_sha256: Optional[str] = None,
        options: Optional[dict] = None,
        key: str = 'gearnn',
        split: str = SPLIT,
    ):
        """Gears holding ``adaptor`` ('bn', 'all' or a selection JSON),
        trained under gear config ``key`` with ``options`` on top and
        evaluated on ``split``; the stage is ``name@{split}`` off val."""
        options = dict(options or {}, **{'model.adaptor': adaptor})
        trained = self._trained_and_evaluated(key, base, options, split)

        def run(stage_dir):
            entry = trained(stage_dir)
            if selection is not None:
                entry['selection'] = selection
            return entry

        extra = self._evaluation_inputs(split)
        return self.cache.run(
            stage_name(name, split),
            self._inputs(
                base_sha256,
                method=name,
                config=self._config_digest(key, options),
                **extra,
                adaptor=adaptor,
                # 'bn' and 'all' leave the training-only modules out.
                candidates='inference-only',
                selection=selection,
                bn_recalibration=[
                    self.profile.bn_batches_per_gear,
                    self.profile.bn_max_batches,
                ],
            ),
            run,
        )

    def select(
        self,
        scoring: str,
        budget: float,
        base: str,
        prefix: str = '',
        base_sha256: Optional[str] = None,
        seed: int = 0,
    ) -> dict:
        """A selection JSON under ``budget`` with ``scoring``: scored at
        the profile's budget, and selected again from those scores at any
        other budget (the scores do not depend on the budget). ``seed``
        seeds the scoring's data and random draws."""
        stage = f'{prefix}selection_{scoring}_{budget:g}'
        if seed:
            stage += f'_seed{seed}'
        source = None
        if budget != self.profile.budget:
            source = self.select(
                scoring, self.profile.budget, base, prefix, base_sha256, seed
            )

        def run(stage_dir):
            out = osp.join(stage_dir, 'selection.json')
            if source is not None:
                record = reselect(source['file'], budget=budget, out=out)
            else:
                record = run_selection_from_config(
                    self._cfg('base', stage_dir, None),
                    base,
                    scoring,
                    config_path=self.configs['base'],
                    budget=budget,
                    steps=self.profile.selection_steps,
                    seed=seed,
                    out=out,
                    device='cuda' if torch.cuda.is_available() else 'cpu',
                )
            return dict(
                file=osp.abspath(out),
                sha256=file_fingerprint(out)['sha256'],
                num_tensors=len(record['selected']),
                used_fraction=record['budget']['used_fraction'],
            )

        inputs = self._inputs(
            base_sha256,
            method='selection',
            config=self._config_digest('base'),
            scoring=scoring,
            budget=budget,
            steps=self.profile.selection_steps,
            # The training-only modules (an auxiliary head) are no
            # candidates: neither scored nor picked.
            candidates='inference-only',
        )
        if seed:
            inputs['seed'] = seed
        if source is not None:
            inputs['scores_from'] = source['sha256']
        return self.cache.run(stage, inputs, run)

    def selected_gears(
        self,
        scoring: str,
        budget: float,
        base: str,
        prefix: str = '',
        name: Optional[str] = None,
        seed: int = 0,
        **gear_args,
    ):
        """Selection then gears on ``base``; stages named with ``prefix``
        for a base other than the clean one. The gears' stage is ``name``
        (default ``{prefix}gears_{scoring}_{budget}``); ``seed`` seeds the
        selection; ``gear_args`` go to :meth:`gears` (``options``,
        ``key``, ``split``)."""
        base_sha256 = file_fingerprint(base)['sha256'] if prefix else None
        selection = self.select(
            scoring, budget, base, prefix, base_sha256, seed
        )
        return self.gears(
            name or f'{prefix}gears_{scoring}_{budget:g}',
            base,
            selection['file'],
            selection=dict(
                scoring=scoring,
                budget=budget,
                sha256=selection['sha256'],
                file=selection['file'],
            ),
            base_sha256=base_sha256,
            **gear_args,
        )
