"""The CamVid-C comparison: the shared stages under the standard
corruptions, every method of the issue, and how gears map to conditions.

=================  ===================================================
clean              the base, evaluated as is
mixed_aug          fine-tuned on frames under a random trained
                   corruption and severity
stability          fine-tuned with the stability loss (alpha fixed)
bn_stats           one gear per corruption holding BN affine and stats
online_bn          the base with BN on each test batch's statistics
tent               the base adapted by TENT along the test stream
gearnn             gears of the Fisher selection at the budget, one per
                   corruption (``per_corruption``) or per corruption and
                   severity (``per_severity``)
=================  ===================================================

Every method is evaluated clean and on the benchmark and held-out
corruptions at every severity, on the same cached corrupted frames. No
method trains on the held-out corruptions, nor on the benchmark ones the
profile leaves ``untrained`` (glass blur, too slow to make on the fly).
Gear models route the trained corruptions by their metadata (the gear of
the corruption) and the untrained ones by the distortion estimator,
trained here on the trained corruptions, to the nearest trained gear.

A stage's config is its method's config with the profile's spaces put in
place (:meth:`CorruptionStages.adjust`): training on the train split's
``train_fit`` frames, the gear table, and the cached corrupted sweep.
"""

import json
import os.path as osp
import time
from typing import Callable, Dict, Optional, Sequence

import mmcv
import numpy as np
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

from mmseg_gearnn.utils import atomic_write

from . import corruption_intervals  # noqa: F401 (registers the hook)
from .corruption_cache import (
    LIBRARY,
    CachedRequestedDistortion,
    CorruptionTrainingDistortion,
    corruption_cost,
    library_version,
)
from .corruption_intervals import AREAS_FILE, bootstrap, load_frame_areas
from .corruption_online import (
    ONLINE_KEY,
    ONLINE_METHOD,
    OPTIONAL_METHODS,
    OnlineStages,
    online_model,
)
from .corruption_profile import CorruptionProfile, gear_count
from .corruption_recipe import RECIPE, RecipeStages, seed_options, seed_suffix
from .corruption_report import merge_seeds, method_entry, run_choices
from .corruption_routing import RoutingStages
from .provenance import REPO_ROOT, git_commit, machine, tree_changes
from .stages import SPLIT, BenchmarkStages
from .tuning import split_files

CONFIG_DIR = osp.join(REPO_ROOT, 'configs/gearnn')
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
CONFIG_PATHS = {k: osp.join(CONFIG_DIR, v) for k, v in CONFIGS.items()}
# The training frames: the train split less the tuning frames.
TRAIN_FIT = osp.join(
    REPO_ROOT, 'configs/_base_/datasets/camvid_splits/train_fit.txt'
)
# Config keys a stage's options may set, read (and removed) by ``adjust``.
SWEEP_KEY = 'corruption_sweep'
MAPPING_KEY = 'corruption_gears'
# True: the gear table also holds a clean gear (see corruption_profile).
CLEAN_GEAR_KEY = 'corruption_clean_gear'
# Segmentors whose gear table ``adjust`` sets.
GEAR_SEGMENTORS = ('GearNNSegmentor', 'DistilledGearNNSegmentor')
# The reported methods, in order.
METHOD_NAMES = (
    'clean',
    'mixed_aug',
    'stability',
    'bn_stats',
    'online_bn',
    'tent',
    'gearnn',
    'gearnn_recipe',
)


def _set_space_of(pipeline, names, space, **extra) -> None:
    for step in pipeline:
        if step.get('type') in names:
            step['space'] = space
            step.update(extra)


class CorruptionStages(
    OnlineStages, RecipeStages, RoutingStages, BenchmarkStages
):
    """The cached stages of the CamVid-C comparison.

    Args:
        data_root (str): a CamVid-layout folder.
        work_dir (str): where stages train, evaluate and cache; corrupted
            frames go to ``work_dir/frames``.
        profile (CorruptionProfile): how much to run.
        profile_name (str): its name in the results.
        base_checkpoint (str, optional): a trained clean base.
        configs (dict): config paths by key (:data:`CONFIG_PATHS`).
    """

    def __init__(
        self,
        data_root: str,
        work_dir: str,
        profile: CorruptionProfile,
        profile_name: str = 'custom',
        base_checkpoint: Optional[str] = None,
        configs: Optional[Dict[str, str]] = None,
        optional_methods: Sequence[str] = (),
    ) -> None:
        super().__init__(
            data_root,
            work_dir,
            configs or CONFIG_PATHS,
            profile.stages,
            base_checkpoint,
            required_configs=CONFIGS,
        )
        self.corruption_profile = profile
        self.profile_name = profile_name
        # The tuning split (train_tune frames): every method can be
        # evaluated there, never on val, to choose (see corruption_recipe).
        if self.splits is None:
            self.splits = split_files(
                self.data_root, osp.join(work_dir, 'splits')
            )
        self.frames_dir = osp.abspath(osp.join(work_dir, 'frames'))
        # Methods of OPTIONAL_METHODS that run() includes.
        self.optional_methods = tuple(optional_methods)

    # -- configs ----------------------------------------------------------

    def adjust(self, cfg: Config, split_frames=None) -> Config:
        """Put the profile's spaces, training frames and cached sweep into
        a stage's config (see the module docstring)."""
        p = self.corruption_profile
        sweep = cfg.pop(SWEEP_KEY, 'all')
        online = cfg.pop(ONLINE_KEY, None)
        mapping = cfg.pop(MAPPING_KEY, p.gear_mappings[0])
        clean_gear = cfg.pop(CLEAN_GEAR_KEY, False)
        train_space = p.train_space(clean_gear)
        gear_space = p.gear_space(mapping, clean_gear)
        eval_space = p.eval_space(sweep)
        # Selection scores the gear table's levels.
        cfg.distortion_space = gear_space
        if cfg.model.get('type') in GEAR_SEGMENTORS:
            cfg.model.space = gear_space
        train = cfg.train_dataloader
        train.dataset.ann_file = TRAIN_FIT
        pipeline = train.dataset.pipeline
        for step in pipeline:
            if step.get('type') == 'RandomDistortion':
                step['type'] = CorruptionTrainingDistortion.__name__
        _set_space_of(
            pipeline,
            ('PairedDistortion', CorruptionTrainingDistortion.__name__),
            train_space,
        )
        for key in ('val_dataloader', 'test_dataloader'):
            dataset = cfg[key].dataset
            if 'space' in dataset:
                dataset.space = eval_space
                dataset.seed = p.seed
                dataset = dataset.dataset
            _set_space_of(
                dataset.pipeline,
                ('RequestedDistortion',),
                eval_space,
                type=CachedRequestedDistortion.__name__,
                cache_dir=self.frames_dir,
                record_gear=False,
            )
        for key in ('val_evaluator', 'test_evaluator'):
            if cfg.get(key) and 'space' in cfg[key]:
                cfg[key].space = eval_space
        # Each frame's class areas too, for the intervals.
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(
                type=corruption_intervals.FrameAreasHook.__name__,
                ignore_index=cfg.test_evaluator.get('ignore_index', 255),
            )
        ]
        if split_frames is not None:
            for key in ('val_dataloader', 'test_dataloader'):
                dataset = cfg[key].dataset
                dataset = dataset.get('dataset', dataset)
                dataset['indices'] = list(split_frames)
        if online is not None:  # online adaptation over the gear model
            cfg.model = online_model(cfg.model, online)
        return cfg

    def _cfg(self, key, stage_dir, iters, options=None, split=SPLIT) -> Config:
        cfg = super()._cfg(key, stage_dir, iters, options, split)
        frames = None
        if split != SPLIT:
            frames = self.corruption_profile.tune_images
        return self.adjust(cfg, frames)

    def _eval_images(self, split: str) -> int:
        if split == SPLIT:
            return super()._eval_images(split)
        return len(self.corruption_profile.tune_images)

    def _config_digest(self, key: str, options: Optional[dict] = None):
        # The profile's spaces are part of what a stage ran.
        p = self.corruption_profile
        return '{}:{}'.format(
            super()._config_digest(key, options),
            json.dumps(
                [
                    p.corruptions,
                    p.held_out,
                    p.untrained,
                    p.severities,
                    p.seed,
                    library_version(),
                ]
            ),
        )

    # -- stages of their own ---------------------------------------------

    def measure_corruption_cost(self) -> dict:
        """Seconds per corruption of one training-size crop (severity 3):
        why training corrupts its random crops on the fly."""
        p = self.corruption_profile
        h, w = self.profile.crop_size or (240, 320)

        def run(stage_dir):
            img = mmcv.imresize(self._train_frames(1)[0], (w, h))
            return dict(
                crop=[h, w],
                seconds=corruption_cost(img, p.corruptions + p.held_out),
            )

        return self.cache.run(
            'corruption_cost',
            dict(size=[h, w], corruptions=p.corruptions + p.held_out),
            run,
        )

    def corrupt_frames(self) -> dict:
        """Every val frame under every evaluated condition, made into the
        frame cache once (what every evaluation then reads)."""
        p = self.corruption_profile

        def run(stage_dir):
            cfg = self._cfg('base', stage_dir, None)
            dataset = DATASETS.build(cfg.test_dataloader.dataset)
            for i in range(len(dataset)):
                dataset[i]
            return dict(images=len(dataset), frames_dir=self.frames_dir)

        return self.cache.run(
            'frames',
            dict(
                data_root=self.data_root,
                val_images=self.profile.val_images,
                crop_size=self.profile.crop_size,
                space=p.eval_space('all'),
                seed=p.seed,
                library=library_version(),
            ),
            run,
        )

    def _train_frames(self, count: int):
        with open(TRAIN_FIT, encoding='utf-8') as f:
            names = [line.strip() for line in f if line.strip()]
        rng = np.random.default_rng(self.corruption_profile.seed)
        picks = rng.choice(len(names), size=count, replace=False)
        return [
            mmcv.imread(osp.join(self.data_root, 'train', names[i] + '.png'))
            for i in sorted(picks)
        ]

    def untrained(
        self,
        name: str,
        checkpoint: str,
        options: dict,
        est,
        key: str = 'gearnn',
        routing: Optional[dict] = None,
    ):
        """Stage ``{name}_untrained``: a gear model on the corruptions no
        gear trained on, each frame routed by the estimator ``est`` (or by
        the router of the ``routing`` options)."""
        if routing is None:
            routing = {
                'model.routing': 'estimate',
                'model.estimator': est['file'],
            }
        options = dict(options, **{SWEEP_KEY: 'untrained'}, **routing)
        inputs = self._inputs(
            method=name,
            checkpoint=checkpoint,
            config=self._config_digest(key, options),
        )
        if est is not None:
            inputs['estimator'] = est['file']
        return self.cache.run(
            f'{name}_untrained',
            inputs,
            lambda d: self.evaluate(key, checkpoint, d, options),
        )

    # -- the comparison --------------------------------------------------

    def gear_method(
        self, name: str, base: str, mapping: str, adaptor, seed: int = 0
    ):
        """Gears of ``adaptor`` ('bn' or 'fisher', selected on the base)
        under ``mapping``, trained with ``seed``: the entry of the trained
        corruptions (metadata routing) and that of the untrained ones
        (estimator routing)."""
        options = {
            SWEEP_KEY: 'trained',
            MAPPING_KEY: mapping,
            **seed_options(seed),
        }
        selection = None
        if adaptor == 'fisher':
            picked = self.select('fisher', self.profile.budget, base)
            adaptor = picked['file']
            selection = dict(
                scoring='fisher',
                budget=self.profile.budget,
                sha256=picked['sha256'],
            )
        entry = self.gears(
            name, base, adaptor, selection=selection, options=options
        )
        ckpt = self.fine_tuned_checkpoint(name)
        held = self.untrained(
            name,
            ckpt,
            dict(options, **{'model.adaptor': adaptor}),
            self.estimator(mapping),
        )
        return entry, held

    def prepare(self) -> dict:
        """The stages that need no model: the corruption cost and the
        corrupted val frames; returns the cost."""
        init_default_scope('mmseg')
        cost = self._progress('corruption cost', self.measure_corruption_cost)
        self._progress('corrupted val frames', self.corrupt_frames)
        return cost

    def runners(self, base: str) -> Dict[str, Callable]:
        """Each reported method's stages by name, in their order: most
        telling first, so that a stopped run has them (the reference, the
        recipe and its rivals, then the paper's GearNN and the rest; other
        seeds last). A runner returns ``(entry, held)`` (``held``: a gear
        model's untrained sweep, or None), the recipe's also its
        routing."""
        p = self.corruption_profile
        mapping = p.gear_mappings[0]

        def stability(seed):
            name = f'stability_alpha{p.alpha:g}' + seed_suffix(seed)
            options = dict({'model.alpha': p.alpha}, **seed_options(seed))
            return self.fine_tuned(name, 'stability', base, options), None

        def mixed(seed):
            name = 'mixed_aug' + seed_suffix(seed)
            return self.fine_tuned(
                name, 'mixed', base, seed_options(seed)
            ), None

        runners = dict(
            clean=lambda: (self.evaluate_model('clean', 'base', base), None),
            mixed_aug=lambda: mixed(0),
            gearnn_recipe=lambda: self.recipe(base),
            stability=lambda: stability(0),
            tent=lambda: (self.evaluate_model('tent', 'tent', base), None),
            gearnn=lambda: self.gear_method('gearnn', base, mapping, 'fisher'),
            bn_stats=lambda: self.gear_method('bn_stats', base, mapping, 'bn'),
            online_bn=lambda: (
                self.evaluate_model('online_bn', 'online_bn', base),
                None,
            ),
        )
        for m in p.gear_mappings[1:]:
            runners[f'gearnn_{m}'] = lambda m=m: self.gear_method(
                f'gearnn_{m}', base, m, 'fisher'
            )
        for seed in p.seeds[1:]:
            runners[f'mixed_aug_seed{seed}'] = lambda s=seed: mixed(s)
            runners[f'{RECIPE}_seed{seed}'] = lambda s=seed: self.recipe(
                base, s
            )
            runners[f'stability_seed{seed}'] = lambda s=seed: stability(s)
            for method, adaptor in (('gearnn', 'fisher'), ('bn_stats', 'bn')):
                runners[f'{method}_seed{seed}'] = (
                    lambda s=seed, m=method, a=adaptor: self.gear_method(
                        m + seed_suffix(s), base, mapping, a, s
                    )
                )
        for seed in p.seeds:
            runners[ONLINE_METHOD + seed_suffix(seed)] = lambda s=seed: (
                self.recipe_with_online(base, s)
            )
        return runners

    def run_methods(self, names) -> Dict[str, tuple]:
        """The stages of the methods ``names`` (and the clean reference),
        without results: a share of a run that another process may run
        beside it on the same work dir (the final run reuses them)."""
        self.prepare()
        base = self._progress('base', self.train_base)
        runners = self.runners(base)
        unknown = sorted(set(names) - set(runners))
        if unknown:
            raise ValueError(
                f'unknown methods {unknown}; choose from {list(runners)}'
            )
        reports = {}
        for name in ['clean'] + [n for n in runners if n in names]:
            reports[name] = self._progress(name, runners[name])
        return reports

    def run(self, command: str = '', source: Optional[dict] = None) -> dict:
        """Every stage (cached ones reused), one progress line each, and
        the results dict of :mod:`.corruption_report` with ``source``'s
        commit and tree state; the bootstrap draws of the goals' intervals
        are kept as ``self.draws``."""
        start = time.time()
        p = self.corruption_profile
        source = source or _provenance(REPO_ROOT)
        cost = self.prepare()
        base = self._progress('base', self.train_base)
        mapping = p.gear_mappings[0]
        runners = self.runners(base)
        reports: Dict[str, tuple] = {}
        for name, runner in runners.items():
            method = name.split('_seed')[0]
            if method in OPTIONAL_METHODS and (
                method not in self.optional_methods
            ):
                continue
            reports[name] = self._progress(name, runner)
            self._write_partial(reports)
        mappings = {}
        for i, m in enumerate(p.gear_mappings):
            entry = reports['gearnn' if i == 0 else f'gearnn_{m}'][0]
            mappings[m] = dict(
                method='gearnn' if i == 0 else f'gearnn_{m}',
                gears=gear_count(p, m),
                adaptor_fraction=entry['adaptor_fraction'],
                memory_ratio=entry['memory_ratio'],
            )
        # The memory of a mapping not trained: its gears hold what the
        # trained one's do.
        fraction = reports['gearnn'][0]['adaptor_fraction']
        for m in ('per_corruption', 'per_severity'):
            if m not in mappings:
                gears = gear_count(p, m)
                mappings[m] = dict(
                    method=None,
                    gears=gears,
                    adaptor_fraction=fraction,
                    memory_ratio=1.0 + gears * fraction,
                )
        entries = self._entries(reports)
        methods, seeds = merge_seeds(entries)
        routing = self._progress(
            'estimator routing', lambda: self.estimator_routing(mapping)
        )
        recipe_routing = reports[RECIPE][2]
        threshold = recipe_routing['choice']['threshold']
        confident = self._progress(
            'recipe routing', lambda: self.confident_routing(threshold)
        )
        self.draws = self._progress(
            'bootstrap', lambda: self._bootstrap(runners, reports)
        )
        no_fallback = {
            name: method_entry(
                reports[name][0],
                reports[name][2]['no_fallback'],
                reports['clean'][0]['levels'],
                p,
            )['held_out_mean']
            for name in reports
            if name.startswith(RECIPE)
        }
        return dict(
            command=command,
            **source,
            wall_time_s=round(time.time() - start, 1),
            # What the stages cost when they ran (reused ones included):
            # the run's compute, where stages ran in earlier processes.
            stage_time_s=round(
                sum(v['time_s'] or 0 for v in self.cache.stages.values()), 1
            ),
            split=SPLIT,
            corruptions=list(p.corruptions),
            held_out=list(p.held_out),
            methods=methods,
            seeds=seeds,
            held_out_mean_no_fallback=dict(
                value=_round_mean(no_fallback.values()),
                per_seed=no_fallback,
            ),
            routing=dict(
                confident,
                choice=recipe_routing['choice'],
                fallback_share=confident['fallback_share'],
            ),
            recipe_robust_base=recipe_routing['robust_base'],
            per_gear_batches=dict(
                gearnn_recipe=self.per_gear_batches(p.stages.iters, True),
                gearnn=self.per_gear_batches(p.stages.iters, False),
                bn_stats=self.per_gear_batches(p.stages.iters, False),
                single_models=dict(
                    methods=['mixed_aug', 'stability'],
                    batches=p.stages.iters,
                ),
                recipe_total_iters=2 * p.stages.iters,
                note='one gear per batch of 8, drawn uniformly: the '
                'expected batches per gear; the recipe trains its robust '
                'base (recipe_robust_base, iters) then its gears (iters)',
            ),
            profile=self.profile_name,
            machine=machine(),
            data_root=self.data_root,
            base_checkpoint=osp.abspath(base),
            library=f'{LIBRARY} {library_version()}',
            choices=run_choices(p, cost),
            gear_mappings=mappings,
            estimator_routing=dict(routing, mapping=mapping),
            corruption_cost_s=cost['seconds'],
            stages=dict(self.cache.stages),
        )

    def _bootstrap(self, runners, reports) -> dict:
        """The bootstrap draws over val frames of every reported method
        (seeds averaged), from each evaluation's ``frame_areas.npz``."""
        p = self.corruption_profile
        stages = {
            'clean': ['clean'],
            'tent': ['tent'],
            'online_bn': ['online_bn'],
        }
        for m in p.gear_mappings[1:]:
            stages[f'gearnn_{m}'] = [f'gearnn_{m}', f'gearnn_{m}_untrained']
        for seed in p.seeds:
            suffix = seed_suffix(seed)
            stages['mixed_aug' + suffix] = ['mixed_aug' + suffix]
            stages['stability' + suffix] = [
                f'stability_alpha{p.alpha:g}' + suffix
            ]
            for method in ('gearnn', 'bn_stats'):
                stages[method + suffix] = [
                    method + suffix,
                    f'{method}{suffix}_untrained',
                ]
            for method in (RECIPE, ONLINE_METHOD):
                if method + suffix in reports:
                    stages[method + suffix] = reports[method + suffix][2][
                        'stages'
                    ]
        runs: Dict[str, list] = {}
        for name, names in stages.items():
            if name not in reports:
                continue
            files = [
                osp.join(self.work_dir, n, 'eval', AREAS_FILE) for n in names
            ]
            method = name.split('_seed')[0]
            runs.setdefault(method, []).append(load_frame_areas(files))
        return bootstrap(runs, p.corruptions, p.held_out)

    def _entries(self, reports: Dict[str, tuple]) -> Dict[str, dict]:
        """Results entries of the finished methods, in report order."""
        reference = reports['clean'][0]['levels']
        order = [n for n in METHOD_NAMES if n in reports]
        order += [n for n in reports if n not in order]
        return {
            name: method_entry(
                *reports[name][:2], reference, self.corruption_profile
            )
            for name in order
        }

    def _write_partial(self, reports: Dict[str, tuple]) -> None:
        """The methods finished so far, in ``work_dir/partial.json``: what
        a stopped run has measured (a rerun resumes it)."""
        atomic_write(
            osp.join(self.work_dir, 'partial.json'),
            json.dumps(self._entries(reports), indent=2),
        )

    def _progress(self, label: str, fn):
        """Run ``fn``, then print one line: the stage, its time and
        whether it was reused."""
        before = set(self.cache.stages)
        start = time.time()
        result = fn()
        new = [s for s in self.cache.stages if s not in before]
        reused = new and all(self.cache.stages[s]['reused'] for s in new)
        print(
            f'[camvid-c] {label}: {"reused" if reused else "done"} in '
            f'{time.time() - start:.0f} s',
            flush=True,
        )
        return result


def _round_mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 2) if values else None


def _provenance(repo_dir: str) -> dict:
    """HEAD and whether the tree had uncommitted changes, untracked files
    included (None outside a git checkout), as :func:`~.provenance.record`
    gives them."""
    changes = tree_changes(repo_dir)
    return dict(
        commit=git_commit(repo_dir).removesuffix('-dirty'),
        dirty=None if changes is None else bool(changes),
        allow_dirty=False,
    )
