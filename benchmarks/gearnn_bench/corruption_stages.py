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
import subprocess
import time
from typing import Dict, Optional

import mmcv
import numpy as np
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

from mmseg_gearnn.apis.estimator import distorted_features, fit_estimator
from mmseg_gearnn.distortions import build_space, corruption_of
from mmseg_gearnn.models import DistortionEstimator
from mmseg_gearnn.utils import atomic_write

from .corruption_cache import (
    LIBRARY,
    CachedRequestedDistortion,
    CorruptionTrainingDistortion,
    corruption_cost,
    library_version,
)
from .corruption_profile import CorruptionProfile, gear_count
from .corruption_report import method_entry
from .provenance import REPO_ROOT, git_commit, machine
from .stages import SPLIT, BenchmarkStages

CONFIG_DIR = osp.join(REPO_ROOT, 'configs/gearnn')
CONFIGS = dict(
    base='deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-240x320.py',
    gearnn='gearnn_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-'
    '240x320.py',
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
# The reported methods, in order.
METHOD_NAMES = (
    'clean',
    'mixed_aug',
    'stability',
    'bn_stats',
    'online_bn',
    'tent',
    'gearnn',
)


def _set_space_of(pipeline, names, space, **extra) -> None:
    for step in pipeline:
        if step.get('type') in names:
            step['space'] = space
            step.update(extra)


class CorruptionStages(BenchmarkStages):
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
        self.frames_dir = osp.abspath(osp.join(work_dir, 'frames'))

    # -- configs ----------------------------------------------------------

    def adjust(self, cfg: Config) -> Config:
        """Put the profile's spaces, training frames and cached sweep into
        a stage's config (see the module docstring)."""
        p = self.corruption_profile
        sweep = cfg.pop(SWEEP_KEY, 'all')
        mapping = cfg.pop(MAPPING_KEY, p.gear_mappings[0])
        train_space = p.train_space()
        gear_space = p.gear_space(mapping)
        eval_space = p.eval_space(sweep)
        # Selection scores the gear table's levels.
        cfg.distortion_space = gear_space
        if cfg.model.get('type') == 'GearNNSegmentor':
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
        return cfg

    def _cfg(self, *args, **kwargs) -> Config:
        return self.adjust(super()._cfg(*args, **kwargs))

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

    def estimator(self, mapping: str) -> dict:
        """A distortion estimator for the gear table of ``mapping``,
        trained on ``train_fit`` frames at the inference resolution under
        every trained corruption and severity, each labelled with its
        nearest gear (its corruption's, where severities share one)."""
        p = self.corruption_profile
        h, w = self.profile.crop_size or (240, 320)
        gear_space = build_space(p.gear_space(mapping))
        train_space = build_space(p.train_space())

        def run(stage_dir):
            images = [
                mmcv.imresize(img, (w, h))
                for img in self._train_frames(p.estimator_images)
            ]
            estimator = DistortionEstimator(gear_space)
            # Features as the estimator computes them at inference.
            features, gears = distorted_features(
                train_space, images, p.seed, estimator.max_side
            )
            labels = np.array(
                [
                    gear_space.gear_id(*train_space.level_of(int(g)))
                    for g in gears
                ]
            )
            stats = fit_estimator(estimator, features, labels, seed=p.seed)
            out = osp.abspath(osp.join(stage_dir, 'estimator.pth'))
            estimator.save(out)
            return dict(
                file=out,
                images=len(images),
                train_accuracy=stats['train_accuracy'],
            )

        return self.cache.run(
            f'estimator_{mapping}',
            dict(
                gears=p.gear_space(mapping),
                data_root=self.data_root,
                mapping=mapping,
                space=p.train_space(),
                images=p.estimator_images,
                size=[h, w],
                seed=p.seed,
                library=library_version(),
            ),
            run,
        )

    def estimator_routing(self, mapping: str) -> dict:
        """Where the estimator of ``mapping`` sends each evaluated
        corruption: ``{corruption: {gear's corruption or 'clean': frames}}``
        over its severities, and the share of frames of the trained
        corruptions sent to their own gear."""
        est = self.estimator(mapping)
        p = self.corruption_profile

        def run(stage_dir):
            estimator = DistortionEstimator.load(est['file'])
            cfg = self._cfg('base', stage_dir, None)
            dataset = DATASETS.build(cfg.test_dataloader.dataset)
            counts: Dict[str, Dict[str, int]] = {}
            hits = total = 0
            for i in range(len(dataset)):
                item = dataset[i]
                record = item['data_samples'].metainfo['distortion']
                truth = corruption_of(record['type']) or 'clean'
                gear = int(estimator.predict_gears([item['inputs']])[0])
                routed = estimator.space.level_of(gear)[0]
                routed = corruption_of(routed) or 'clean'
                cells = counts.setdefault(truth, {})
                cells[routed] = cells.get(routed, 0) + 1
                if truth in p.trained:
                    total += 1
                    hits += routed == truth
            return dict(
                routed=counts,
                trained_accuracy=round(hits / max(total, 1), 4),
            )

        return self.cache.run(
            f'estimator_routing_{mapping}',
            dict(
                estimator=est['file'],
                estimator_time=est.get('time_s'),
                val_images=self.profile.val_images,
                space=p.eval_space('all'),
            ),
            run,
        )

    def untrained(self, name: str, checkpoint: str, options: dict, est):
        """Stage ``{name}_untrained``: a gear model on the corruptions no
        gear trained on, each frame routed by the estimator ``est``."""
        options = dict(
            options,
            **{
                SWEEP_KEY: 'untrained',
                'model.routing': 'estimate',
                'model.estimator': est['file'],
            },
        )
        return self.cache.run(
            f'{name}_untrained',
            self._inputs(
                method=name,
                checkpoint=checkpoint,
                estimator=est['file'],
                config=self._config_digest('gearnn', options),
            ),
            lambda d: self.evaluate('gearnn', checkpoint, d, options),
        )

    # -- the comparison --------------------------------------------------

    def gear_method(self, name: str, base: str, mapping: str, adaptor):
        """Gears of ``adaptor`` ('bn' or 'fisher') under ``mapping``: the
        entry of the trained corruptions (metadata routing) and that of
        the untrained ones (estimator routing)."""
        options = {SWEEP_KEY: 'trained', MAPPING_KEY: mapping}
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

    def run(self, command: str = '', repo_dir: str = '.') -> dict:
        """Every stage (cached ones reused), one progress line each, and
        the results dict of :mod:`.corruption_report`."""
        start = time.time()
        p = self.corruption_profile
        commit, dirty = _provenance(repo_dir)
        cost = self.prepare()
        base = self._progress('base', self.train_base)
        # Most telling first, so that a stopped run has them: the
        # reference, GearNN, then its rivals on held-out corruptions.
        runners = dict(
            clean=lambda: (self.evaluate_model('clean', 'base', base), None),
            gearnn=lambda: self.gear_method(
                'gearnn', base, p.gear_mappings[0], 'fisher'
            ),
            tent=lambda: (self.evaluate_model('tent', 'tent', base), None),
            mixed_aug=lambda: (
                self.fine_tuned('mixed_aug', 'mixed', base),
                None,
            ),
            stability=lambda: (
                self.fine_tuned(
                    f'stability_alpha{p.alpha:g}',
                    'stability',
                    base,
                    {'model.alpha': p.alpha},
                ),
                None,
            ),
            bn_stats=lambda: self.gear_method(
                'bn_stats', base, p.gear_mappings[0], 'bn'
            ),
            online_bn=lambda: (
                self.evaluate_model('online_bn', 'online_bn', base),
                None,
            ),
        )
        for mapping in p.gear_mappings[1:]:
            runners[f'gearnn_{mapping}'] = lambda m=mapping: self.gear_method(
                f'gearnn_{m}', base, m, 'fisher'
            )
        reports: Dict[str, tuple] = {}
        for name, runner in runners.items():
            reports[name] = self._progress(name, runner)
            self._write_partial(reports)
        mappings = {}
        for i, mapping in enumerate(p.gear_mappings):
            entry = reports['gearnn' if i == 0 else f'gearnn_{mapping}'][0]
            mappings[mapping] = dict(
                method='gearnn' if i == 0 else f'gearnn_{mapping}',
                gears=gear_count(p, mapping),
                adaptor_fraction=entry['adaptor_fraction'],
                memory_ratio=entry['memory_ratio'],
            )
        # The memory of a mapping not trained: its gears hold what the
        # trained one's do.
        fraction = reports['gearnn'][0]['adaptor_fraction']
        for mapping in ('per_corruption', 'per_severity'):
            if mapping not in mappings:
                gears = gear_count(p, mapping)
                mappings[mapping] = dict(
                    method=None,
                    gears=gears,
                    adaptor_fraction=fraction,
                    memory_ratio=1.0 + gears * fraction,
                )
        methods = self._entries(reports)
        routing = self._progress(
            'estimator routing',
            lambda: self.estimator_routing(p.gear_mappings[0]),
        )
        return dict(
            command=command,
            commit=commit,
            dirty=dirty,
            wall_time_s=round(time.time() - start, 1),
            split=SPLIT,
            corruptions=list(p.corruptions),
            held_out=list(p.held_out),
            methods=methods,
            profile=self.profile_name,
            machine=machine(),
            data_root=self.data_root,
            base_checkpoint=osp.abspath(base),
            library=f'{LIBRARY} {library_version()}',
            choices=_choices(p, cost),
            gear_mappings=mappings,
            estimator_routing=dict(routing, mapping=p.gear_mappings[0]),
            corruption_cost_s=cost['seconds'],
            stages=dict(self.cache.stages),
        )

    def _entries(self, reports: Dict[str, tuple]) -> Dict[str, dict]:
        """Results entries of the finished methods, in report order."""
        reference = reports['clean'][0]['levels']
        order = [n for n in METHOD_NAMES if n in reports]
        order += [n for n in reports if n not in order]
        return {
            name: method_entry(
                *reports[name], reference, self.corruption_profile
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


def _provenance(repo_dir: str):
    """HEAD and whether the tree had uncommitted changes, untracked files
    included (None outside a git checkout)."""
    head = git_commit(repo_dir).removesuffix('-dirty')
    try:
        status = subprocess.run(
            ['git', '-C', repo_dir, 'status', '--porcelain'],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return head, None
    return head, bool(status)


def _choices(p: CorruptionProfile, cost: dict) -> dict:
    """The run's settings, stated in the results file."""
    s = p.stages
    slowest = max(cost['seconds'], key=cost['seconds'].get)
    return dict(
        val_frames=list(s.val_images) if s.val_images else 'all',
        resolution='240x320'
        if s.crop_size is None
        else 'x'.join(map(str, s.crop_size)),
        iters=s.iters,
        budget=s.budget,
        stability_alpha=p.alpha,
        train_frames='configs/_base_/datasets/camvid_splits/train_fit.txt',
        severities=list(p.severities),
        gear_mappings=list(p.gear_mappings),
        training_corruption=(
            'on the fly on each random crop; the slowest, '
            f'{slowest}, costs {cost["seconds"][slowest]} s a crop'
        ),
        untrained=list(p.untrained),
        eval_frames='corrupted once per (frame, corruption, severity, '
        'seed, library version), cached as PNG in the work dir',
        untrained_routing='gear models: the untrained and held-out '
        'corruptions routed by a distortion estimator trained on the '
        'trained corruptions, to the nearest trained gear',
        reference_for_mCE='clean',
    )
