"""The robustness benchmark: the paper's comparison on a CamVid-layout
folder, from one cached clean base model.

Every method is a configuration of the same machinery, trained from the
same clean base for the same number of iterations and evaluated on the
``val`` split clean and at every (type, level) of the distortion space:

=================  ===================================================
clean              the base model, trained on undistorted frames
mixed_aug          the base fine-tuned on randomly distorted frames
stability          the base fine-tuned with the stability loss; alpha is
                   chosen on val among ``profile.alphas``
bn_stats           one gear per level holding BN affine and statistics
full_finetune      one gear per level holding every tensor
gearnn             one gear per level holding the tensors selected by
                   Fisher scores under ``profile.budget``
gearnn_{scoring}   the same with another scoring method
random_selection   the same budget filled at random
=================  ===================================================

Each stage keeps its result in ``work_dir/<stage>/result.json`` together
with what it depended on (data, base, profile, and its config as loaded,
bases included), so a second run resumes where the first stopped and
redoes a stage only when its inputs changed. The base itself is kept once
trained: delete ``work_dir/base`` to train it again. Library code is not
part of the inputs.
"""

import copy
import hashlib
import json
import os
import os.path as osp
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import init_default_scope

from ..evaluation.report import (
    markdown_table,
    plot_miou_vs_level,
)
from ..selection.base_weights import file_fingerprint
from ..utils.config import (
    set_crop_size,
    set_data_root,
    set_distortion_space,
)
from ..utils.io import atomic_write
from .pipeline import evaluate_levels, train

SPLIT = 'val'
REQUIRED_METHODS = (
    'clean',
    'mixed_aug',
    'stability',
    'bn_stats',
    'full_finetune',
    'gearnn',
    'random_selection',
)


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
        alphas (tuple[float]): stability weights tried; the best on val is
            reported as ``stability``.
        selection_steps (int): batches per level used to score tensors.
        num_workers (int): dataloader workers.
        batch_size (int, optional): training batch size; None keeps the
            configs'.
        gears_on_mixed_aug (bool): also run GearNN with the mixed_aug model
            as its base (``gearnn_on_mixed_aug``).
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
    alphas: Tuple[float, ...] = (3.0,)
    selection_steps: int = 4
    num_workers: int = 2
    batch_size: Optional[int] = None
    gears_on_mixed_aug: bool = False
    bn_batches_per_gear: int = 4
    bn_max_batches: Optional[int] = None
    crop_size: Optional[Tuple[int, int]] = None
    distortion_space: Optional[dict] = None
    full_finetune_lr: float = 2e-3


PROFILES = {
    # Every method of the comparison once: GearNN (fisher) and random
    # selection at 0.2% per gear, stability training at the alpha the
    # extended run chose on val. Base training included, 75.8 minutes
    # from nothing on a 2-core CPU (benchmarks/results/camvid.md).
    'full': BenchmarkProfile(),
    # The same stages plus every scoring method at 0.2%, the budget curve
    # of every scoring method and of random selection, the stability alpha
    # grid and GearNN on the mixed-augmentation model.
    'extended': BenchmarkProfile(
        scorings=('fisher', 'rgn', 'weight_change'),
        curve_budgets=(0.0005, 0.002, 0.01),
        curve_scorings=('fisher', 'rgn', 'weight_change', 'random'),
        alphas=(0.3, 3.0),
        gears_on_mixed_aug=True,
    ),
    # A smoke run of every stage on a few frames: checks the machinery and
    # the output, not the accuracy.
    'quick': BenchmarkProfile(
        iters=3,
        base_iters=6,
        train_images=8,
        val_images=2,
        scorings=('fisher',),
        curve_budgets=(0.002, 0.01),
        alphas=(1.0,),
        gears_on_mixed_aug=True,
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


def _log(msg: str) -> None:
    print_log(f'[benchmark] {msg}', logger='current')


def git_commit(repo_dir: str) -> str:
    """HEAD of the repository at ``repo_dir`` (``-dirty`` when it has
    uncommitted changes), or ``'unknown'`` outside a git checkout."""
    try:
        head = subprocess.run(
            ['git', '-C', repo_dir, 'rev-parse', 'HEAD'],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ['git', '-C', repo_dir, 'status', '--porcelain', '-uno'],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return head + ('-dirty' if dirty else '')


def machine() -> str:
    """A one-line description of this machine."""
    return (
        f'{platform.machine()} {platform.processor() or ""} '
        f'{os.cpu_count()} CPUs, {platform.system()} '
        f'{platform.release()}, Python {platform.python_version()}'
    ).replace('  ', ' ')


def set_schedule(cfg: Config, iters: int) -> None:
    """Shorten or lengthen ``cfg``'s iteration-based schedule to ``iters``:
    training length, validation and checkpoint intervals, and the
    learning-rate schedulers (a warm-up that would not end is dropped)."""
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    old = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.default_hooks.checkpoint.interval = iters
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    kept = []
    for sched in schedulers:
        sched = copy.deepcopy(sched)
        begin, end = sched.get('begin', 0), sched.get('end', old)
        if end >= old:
            end = iters
        if begin >= iters or end > iters:
            continue
        sched['begin'], sched['end'] = begin, end
        kept.append(sched)
    cfg.param_scheduler = kept


def _dataloader_dataset(cfg: Config, key: str):
    dataset = cfg[key]['dataset']
    # A DistortionSweepDataset wraps the real dataset.
    return dataset['dataset'] if 'dataset' in dataset else dataset


def profiled_config(
    config: str, profile: BenchmarkProfile, options: Optional[dict] = None
) -> Config:
    """``config`` with ``options`` at the profile's resolution and
    distortion space: what a stage runs, before paths and schedule."""
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    if profile.crop_size is not None:
        set_crop_size(cfg, tuple(profile.crop_size))
    if profile.distortion_space is not None:
        set_distortion_space(cfg, profile.distortion_space)
    return cfg


def stage_config(
    config: str,
    work_dir: str,
    data_root: str,
    profile: BenchmarkProfile,
    iters: Optional[int],
    options: Optional[dict] = None,
) -> Config:
    """``config`` pointed at ``data_root``, shrunk to ``profile``."""
    cfg = profiled_config(config, profile, options)
    set_data_root(cfg, data_root)
    cfg.work_dir = work_dir
    if iters is not None:
        set_schedule(cfg, iters)
    subsets = (
        ('train_dataloader', profile.train_images),
        ('val_dataloader', profile.val_images),
        ('test_dataloader', profile.val_images),
    )
    for key, count in subsets:
        loader = cfg[key]
        loader['num_workers'] = profile.num_workers
        loader['persistent_workers'] = profile.num_workers > 0
        if count is not None:
            _dataloader_dataset(cfg, key)['indices'] = count
    if profile.batch_size is not None:
        cfg.train_dataloader.batch_size = profile.batch_size
    for hook in cfg.get('custom_hooks', []):
        if hook['type'] == 'GearBNRecalibrationHook':
            hook['batches_per_gear'] = profile.bn_batches_per_gear
            hook['max_batches'] = profile.bn_max_batches
    # The benchmark logs little: one line per 25 iterations.
    cfg.default_hooks.logger.interval = 25
    return cfg


class StageCache:
    """Results of finished stages, each in ``work_dir/<stage>/result.json``
    with the inputs it was computed from; a stage whose inputs changed is
    run again."""

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        # stage -> its own run time and whether this run reused it.
        self.stages: Dict[str, dict] = {}

    def record(self, stage: str, time_s: Optional[float], reused: bool):
        if self.stages.get(stage, {}).get('reused') is False:
            return  # run earlier in this run, then asked for again
        self.stages[stage] = dict(time_s=time_s, reused=reused)

    def run(self, stage: str, inputs: dict, fn: Callable[[str], dict]):
        # As JSON reads it back: tuples become lists.
        inputs = json.loads(json.dumps(inputs))
        stage_dir = osp.join(self.work_dir, stage)
        result_file = osp.join(stage_dir, 'result.json')
        if osp.isfile(result_file):
            with open(result_file, encoding='utf-8') as f:
                cached = json.load(f)
            if cached.get('inputs') == inputs:
                _log(f'{stage}: reusing {result_file}')
                result = cached['result']
                self.record(stage, result.get('time_s'), reused=True)
                return result
        _log(f'{stage}: running')
        start = time.time()
        result = fn(stage_dir)
        result['time_s'] = round(time.time() - start, 1)
        self.record(stage, result['time_s'], reused=False)
        atomic_write(
            result_file,
            json.dumps(dict(inputs=inputs, result=result), indent=2),
        )
        return result


def _method_entry(report: dict, adaptor_fraction: float, num_gears: int):
    """The results-file entry of one evaluated method."""
    return dict(
        mean_miou=report['mean_distorted'],
        clean_miou=report['clean'],
        memory_ratio=1.0 + (num_gears - 1) * adaptor_fraction,
        adaptor_fraction=adaptor_fraction,
        levels=report['levels'],
    )


class CamVidBenchmark:
    """Runs every method of the comparison and writes the results files.

    Args:
        data_root (str): a CamVid-layout folder (``train``,
            ``trainannot``, ``val``, ``valannot``).
        work_dir (str): where stages train, evaluate and cache.
        configs (dict): config paths: ``base`` (the clean model),
            ``gearnn`` (gear training), ``mixed`` and ``stability``.
        profile (BenchmarkProfile | str): how much to run.
        base_checkpoint (str, optional): a trained base to use instead of
            training one.
    """

    def __init__(
        self,
        data_root: str,
        work_dir: str,
        configs: Dict[str, str],
        profile='full',
        base_checkpoint: Optional[str] = None,
    ) -> None:
        self.data_root = osp.abspath(data_root)
        for sub in ('train', 'trainannot', SPLIT, SPLIT + 'annot'):
            if not osp.isdir(osp.join(self.data_root, sub)):
                raise FileNotFoundError(
                    f'{data_root} is not a CamVid-layout folder: it lacks '
                    f'{sub}/ (needs train/, trainannot/, {SPLIT}/ and '
                    f'{SPLIT}annot/)'
                )
        missing = {'base', 'gearnn', 'mixed', 'stability'} - set(configs)
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
        self.timings: Dict[str, float] = {}

    # -- stages -----------------------------------------------------------

    def _cfg(self, key: str, stage_dir: str, iters, options=None) -> Config:
        return stage_config(
            self.configs[key],
            stage_dir,
            self.data_root,
            self.profile,
            iters,
            options,
        )

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
        other stages (budgets, scorings, alphas) stay out, so that adding a
        budget reruns nothing else."""
        p = self.profile
        inputs = dict(
            data_root=self.data_root,
            base=base_sha256 or getattr(self, 'base_sha256', None),
            iters=p.iters,
            train_images=p.train_images,
            val_images=p.val_images,
            num_workers=p.num_workers,
            batch_size=p.batch_size,
        )
        inputs.update(extra)
        return inputs

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

    def evaluate(
        self, key: str, checkpoint: str, stage_dir: str, options=None
    ) -> dict:
        """Per-level report of ``checkpoint`` under config ``key`` plus its
        memory accounting."""
        cfg = self._cfg(key, osp.join(stage_dir, 'eval'), None, options)
        report, model = evaluate_levels(
            cfg, checkpoint, cfg.work_dir, return_model=True
        )
        model = getattr(model, 'module', model)
        if hasattr(model, 'adaptor_fraction'):
            fraction = model.adaptor_fraction()
            num_gears = model.gear_bank.num_gears
        else:
            fraction, num_gears = 0.0, 1
        return _method_entry(report, fraction, num_gears)

    def clean(self, base: str) -> dict:
        return self.cache.run(
            'clean',
            self._inputs(method='clean', config=self._config_digest('base')),
            lambda d: self.evaluate('base', base, d),
        )

    def fine_tuned(self, name: str, key: str, base: str, options=None):
        """A single model fine-tuned from the base (mixed_aug, stability)."""
        options = dict(options or {})

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
            return self.evaluate(key, ckpt, stage_dir, options)

        return self.cache.run(
            name,
            self._inputs(
                method=name,
                options=options,
                config=self._config_digest(key, options),
            ),
            run,
        )

    def gears(
        self,
        name: str,
        base: str,
        adaptor: str,
        selection=None,
        base_sha256: Optional[str] = None,
        options: Optional[dict] = None,
    ):
        """Gears holding ``adaptor`` ('bn', 'all' or a selection JSON),
        with config ``options`` on top."""
        options = dict(options or {}, **{'model.adaptor': adaptor})

        def run(stage_dir):
            ckpt = train(
                self._training_cfg(
                    'gearnn',
                    stage_dir,
                    self.profile.iters,
                    dict(options, load_from=base),
                ),
                stage_dir,
                reuse=False,
            )
            entry = self.evaluate('gearnn', ckpt, stage_dir, options)
            if selection is not None:
                entry['selection'] = selection
            return entry

        return self.cache.run(
            name,
            self._inputs(
                base_sha256,
                method=name,
                config=self._config_digest('gearnn', options),
                adaptor=adaptor,
                selection=selection,
                bn_recalibration=[
                    self.profile.bn_batches_per_gear,
                    self.profile.bn_max_batches,
                ],
            ),
            run,
        )

    def full_finetune(self, base: str) -> dict:
        """Gears holding every weight, at ``profile.full_finetune_lr``."""
        lr = self.profile.full_finetune_lr
        return self.gears(
            'full_finetune',
            base,
            'all',
            options={'optim_wrapper.optimizer.lr': lr},
        )

    def select(
        self,
        scoring: str,
        budget: float,
        base: str,
        prefix: str = '',
        base_sha256: Optional[str] = None,
    ) -> dict:
        """A selection JSON under ``budget`` with ``scoring``: scored at
        the profile's budget, and selected again from those scores at any
        other budget (the scores do not depend on the budget)."""
        from ..selection import reselect, run_selection_from_config

        stage = f'{prefix}selection_{scoring}_{budget:g}'
        source = None
        if budget != self.profile.budget:
            source = self.select(
                scoring, self.profile.budget, base, prefix, base_sha256
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
            # The knapsack never picks the training-only modules.
            excluded_modules='training-only',
        )
        if source is not None:
            inputs['scores_from'] = source['sha256']
        return self.cache.run(stage, inputs, run)

    def selected_gears(
        self, scoring: str, budget: float, base: str, prefix: str = ''
    ):
        """Selection then gears on ``base``; stages named with ``prefix``
        for a base other than the clean one."""
        base_sha256 = file_fingerprint(base)['sha256'] if prefix else None
        selection = self.select(scoring, budget, base, prefix, base_sha256)
        name = f'{prefix}gears_{scoring}_{budget:g}'
        return self.gears(
            name,
            base,
            selection['file'],
            selection=dict(
                scoring=scoring, budget=budget, sha256=selection['sha256']
            ),
            base_sha256=base_sha256,
        )

    # -- the whole run ----------------------------------------------------

    def run(self, command: str = '', repo_dir: str = '.') -> dict:
        """Run every stage (reusing cached ones) and return the results."""
        init_default_scope('mmseg')
        start = time.time()
        commit = git_commit(repo_dir)  # the code this run starts with
        profile = self.profile
        base = self.train_base()
        methods: Dict[str, dict] = {}
        methods['clean'] = self.clean(base)
        methods['mixed_aug'] = self.fine_tuned('mixed_aug', 'mixed', base)

        alpha_grid = {}
        for alpha in profile.alphas:
            alpha_grid[alpha] = self.fine_tuned(
                f'stability_alpha{alpha:g}',
                'stability',
                base,
                {'model.alpha': alpha},
            )
        best = max(alpha_grid, key=lambda a: alpha_grid[a]['mean_miou'])
        methods['stability'] = dict(alpha_grid[best], alpha=best)

        methods['bn_stats'] = self.gears('bn_stats', base, 'bn')
        methods['full_finetune'] = self.full_finetune(base)

        for i, scoring in enumerate(profile.scorings):
            name = 'gearnn' if i == 0 else f'gearnn_{scoring}'
            methods[name] = self.selected_gears(scoring, profile.budget, base)
        methods['random_selection'] = self.selected_gears(
            'random', profile.budget, base
        )
        if profile.gears_on_mixed_aug:
            # GearNN on top of a robust base: the mixed-augmentation model
            # is the shared base, gears adapt it further per level.
            mixed = osp.join(
                self.work_dir, 'mixed_aug', f'iter_{profile.iters}.pth'
            )
            methods['gearnn_on_mixed_aug'] = self.selected_gears(
                profile.scorings[0], profile.budget, mixed, 'on_mixed_aug_'
            )

        curve: Dict[str, Dict[str, dict]] = {}
        for scoring in profile.curve_scorings:
            for budget in profile.curve_budgets:
                entry = self.selected_gears(scoring, budget, base)
                curve.setdefault(scoring, {})[f'{budget:g}'] = dict(
                    mean_miou=entry['mean_miou'],
                    clean_miou=entry['clean_miou'],
                    adaptor_fraction=entry['adaptor_fraction'],
                )
        for scoring in profile.scorings:
            name = (
                'gearnn'
                if scoring == profile.scorings[0]
                else (f'gearnn_{scoring}')
            )
            point = curve.setdefault(scoring, {})
            point.setdefault(
                f'{profile.budget:g}',
                {
                    k: methods[name][k]
                    for k in ('mean_miou', 'clean_miou', 'adaptor_fraction')
                },
            )

        results = dict(
            command=command,
            commit=commit,
            machine=machine(),
            wall_time_s=round(time.time() - start, 1),
            split=SPLIT,
            data_root=self.data_root,
            profile=self.profile_name,
            settings=asdict(profile),
            base_checkpoint=osp.abspath(base),
            stability_alpha={
                f'{a:g}': alpha_grid[a]['mean_miou'] for a in alpha_grid
            },
            methods=methods,
            budget_curve=curve,
            stages=dict(self.cache.stages),
        )
        results['goals'] = evaluate_goals(results)
        return results


# -- goals and reports ----------------------------------------------------


def evaluate_goals(results: dict) -> List[dict]:
    """Each goal of the comparison as measured: value, target, met, and by
    how much it is missed."""
    m = results['methods']
    gear = m['gearnn']
    goals = []

    def goal(
        name: str, value: float, target: float, compare: str = '>='
    ) -> None:
        gap = value - target if compare == '<=' else target - value
        met = gap < 0 if compare == '>' else gap <= 0
        goals.append(
            dict(
                goal=name,
                value=round(value, 4),
                compare=compare,
                target=target,
                met=bool(met),
                short_by=round(max(0.0, gap), 4),
            )
        )

    mean = gear['mean_miou']
    goal('gearnn - clean (mIoU points)', mean - m['clean']['mean_miou'], 18.0)
    goal(
        'gearnn - stability (mIoU points)',
        mean - m['stability']['mean_miou'],
        4.8,
    )
    goal(
        'gearnn - mixed_aug (mIoU points)',
        mean - m['mixed_aug']['mean_miou'],
        4.8,
    )
    goal(
        'gearnn - full_finetune (mIoU points, within 1 below)',
        mean - m['full_finetune']['mean_miou'],
        -1.0,
    )
    goal(
        'gearnn - bn_stats (mIoU points, above)',
        mean - m['bn_stats']['mean_miou'],
        0.0,
        compare='>',
    )
    goal(
        'gearnn - random_selection (mIoU points, above)',
        mean - m['random_selection']['mean_miou'],
        0.0,
        compare='>',
    )
    goal(
        'gearnn adaptor_fraction (percent of the model per gear)',
        100 * gear['adaptor_fraction'],
        0.2,
        compare='<=',
    )
    goal(
        '|gearnn clean - clean model clean| (mIoU points, equal)',
        abs(gear['clean_miou'] - m['clean']['clean_miou']),
        0.0,
        compare='<=',
    )
    on_mixed = m.get('gearnn_on_mixed_aug')
    if on_mixed is not None:
        for other, target in (
            ('clean', 18.0),
            ('stability', 4.8),
            ('mixed_aug', 4.8),
        ):
            goal(
                f'gearnn_on_mixed_aug - {other} (mIoU points)',
                on_mixed['mean_miou'] - m[other]['mean_miou'],
                target,
            )
    return goals


def _num(value, digits=2) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def stage_lines(stages: Dict[str, dict]) -> List[str]:
    """Which stages a run reused, and every stage's own time summed: what
    the same run would take from nothing (less a reused base, whose time
    is not recorded)."""
    if not stages:
        return []
    reused = [name for name, s in stages.items() if s['reused']]
    timed = [s['time_s'] for s in stages.values() if s['time_s'] is not None]
    untimed = [name for name, s in stages.items() if s['time_s'] is None]
    total = f'{sum(timed) / 60:.1f} min'
    if untimed:
        total += f' (without {", ".join(untimed)}: given or reused)'
    return [
        '- stages reused from earlier runs: '
        + (', '.join(f'`{n}`' for n in reused) if reused else 'none'),
        f"- every stage's own time summed: {total}",
    ]


def results_markdown(results: dict, png: Optional[str] = None) -> str:
    """The results file in markdown: provenance, the method table, the
    per-level table, the budget curve, the stability alphas and the
    goals."""
    m = results['methods']
    lines = [
        '# Robustness benchmark on CamVid',
        '',
        f'- command: `{results["command"]}`',
        f'- commit: `{results["commit"]}`',
        f'- machine: {results["machine"]}',
        f'- wall time: {results["wall_time_s"] / 60:.1f} min '
        f'(profile `{results["profile"]}`)',
        *stage_lines(results.get('stages', {})),
        f'- data: `{results["data_root"]}`, split `{results["split"]}`',
        f'- base checkpoint: `{results["base_checkpoint"]}`',
        '',
        'mIoU in percent; `mean` averages every (type, level) of the '
        'distortion space; `adaptor` is one gear over the model '
        '(parameter and buffer bytes); `memory` is everything the method '
        'holds over the base.',
        '',
        '| method | mean | clean | adaptor | memory |',
        '| --- | ---: | ---: | ---: | ---: |',
    ]
    for name, e in m.items():
        lines.append(
            f'| {name} | {_num(e["mean_miou"])} | {_num(e["clean_miou"])} '
            f'| {e["adaptor_fraction"]:.4%} | {e["memory_ratio"]:.4f} |'
        )
    lines += ['', '## mIoU per distortion level', '']
    lines.append(
        markdown_table(
            {k: e['levels'] for k, e in m.items()},
            clean={k: e['clean_miou'] for k, e in m.items()},
        )
    )
    if png:
        lines += ['', f'![mIoU against level]({png})']
    lines += [
        '',
        '## Budget curve (mean mIoU over all levels)',
        '',
    ]
    budgets = sorted(
        {b for c in results['budget_curve'].values() for b in c},
        key=float,
    )
    lines.append(
        '| selection | '
        + ' | '.join(f'{float(b):.2%}' for b in budgets)
        + ' |'
    )
    lines.append('| --- |' + ' ---: |' * len(budgets))
    for scoring, points in results['budget_curve'].items():
        cells = [
            _num(points[b]['mean_miou']) if b in points else '-'
            for b in budgets
        ]
        lines.append(f'| {scoring} | ' + ' | '.join(cells) + ' |')
    lines += [
        '',
        '## Stability training: alpha chosen on val',
        '',
        '| alpha | mean |',
        '| ---: | ---: |',
    ]
    for alpha, mean in results['stability_alpha'].items():
        lines.append(f'| {alpha} | {_num(mean)} |')
    lines += [
        '',
        '## Goals',
        '',
        '| goal | measured | target | met | short by |',
        '| --- | ---: | ---: | --- | ---: |',
    ]
    for g in results['goals']:
        # records written before goals carried their comparison were all >=
        compare = g.get('compare', '>=')
        lines.append(
            f'| {g["goal"]} | {g["value"]:.4g} | {compare} {g["target"]:g} | '
            f'{"yes" if g["met"] else "no"} | {g["short_by"]:.4g} |'
        )
    return '\n'.join(lines) + '\n'


def write_results(results: dict, out_dir: str, name: str) -> Dict[str, str]:
    """``name.json``, ``name.md`` and ``name.png`` in ``out_dir``."""
    m = results['methods']
    png = plot_miou_vs_level(
        {k: e['levels'] for k, e in m.items()},
        osp.join(out_dir, f'{name}.png'),
        clean={k: e['clean_miou'] for k, e in m.items()},
    )
    paths = dict(
        json=atomic_write(
            osp.join(out_dir, f'{name}.json'), json.dumps(results, indent=2)
        ),
        md=atomic_write(
            osp.join(out_dir, f'{name}.md'),
            results_markdown(results, osp.basename(png)),
        ),
        png=png,
    )
    return paths


def check_results_schema(results: dict, methods: Sequence[str] = None):
    """Raise ValueError unless ``results`` has the documented shape."""
    methods = REQUIRED_METHODS if methods is None else methods
    for key, kind in (
        ('command', str),
        ('commit', str),
        ('wall_time_s', float),
        ('split', str),
        ('methods', dict),
    ):
        if not isinstance(results.get(key), kind):
            raise ValueError(f'results[{key!r}] must be a {kind.__name__}')
    for name in methods:
        entry = results['methods'].get(name)
        if entry is None:
            raise ValueError(f'results lack method {name!r}')
        for key in (
            'mean_miou',
            'clean_miou',
            'memory_ratio',
            'adaptor_fraction',
        ):
            if not isinstance(entry.get(key), (int, float)):
                raise ValueError(f'{name}.{key} must be a number')
        if not entry['levels']:
            raise ValueError(f'{name}.levels is empty')
