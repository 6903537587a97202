"""The GearNN pipeline as library calls: train a base, select the adaptor,
train the gears, evaluate every distortion level, report.

Each stage is a plain mmengine run of a config, so a stage can also be
run alone with ``tools/train.py``, ``tools/select_params.py`` and
``tools/test.py``. The runs are :class:`~mmseg_gearnn.engine.ConsoleRunner`
runs (unless a config names its ``runner_type``): the console shows one
line per stage, a progress bar and the results, and each run's work dir
keeps mmengine's full log and the dumped config; inside
``quiet_console(verbose=True)`` the console shows everything.

:func:`run_gearnn` is reproducible run to run: one seed for every stage
(mmengine's ``randomness`` of each run, its data workers included, and the
selection's batches), torch's deterministic algorithms, and a fixed number
of CPU threads (the order of floating-point sums depends on it).
"""

import copy
import glob
import json
import os
import os.path as osp
import time
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Union

import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS, init_default_scope
from mmengine.runner import Runner

from ..engine import ConsoleRunner
from ..evaluation import markdown_table, plot_miou_vs_level
from ..models.adaptor_tensors import adaptor_size_text
from ..utils.console import (
    WARNINGS_LOG,
    console_is_verbose,
    quiet_console,
    quiet_while_running,
    say,
    stage,
)
from ..utils.io import atomic_write

STAGES = 4


def build_runner(cfg: Config) -> Runner:
    """The config's ``runner_type`` if it names one, else a
    :class:`~mmseg_gearnn.engine.ConsoleRunner`."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return ConsoleRunner.from_cfg(cfg)


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint of the highest iteration in ``work_dir``, if any."""
    paths = glob.glob(osp.join(work_dir, 'iter_*.pth'))
    if not paths:
        return None
    return max(paths, key=lambda p: int(osp.basename(p)[5:-4]))


def _load_cfg(
    config: Union[str, Config], work_dir: str, options: Optional[dict]
) -> Config:
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    cfg.work_dir = work_dir
    return cfg


@contextmanager
def reproducible(
    deterministic: bool = True, threads: Optional[int] = None
) -> Iterator[None]:
    """Torch's deterministic algorithms (cuDNN's too) and ``threads`` CPU
    threads while this lasts (each unchanged when ``False`` / ``None``);
    restored after.

    An operation without a deterministic implementation (some CUDA
    backward passes) warns instead of failing: a GPU run stays possible,
    reproducible as far as torch allows. The number of threads is part of
    the result on a CPU: torch splits a reduction into one chunk per
    thread, and the order of floating-point sums changes the last bits,
    which training amplifies.
    """
    if threads is not None and threads < 1:
        raise ValueError(f'threads must be at least 1, got {threads}')
    was = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.get_num_threads(),
    )
    if deterministic:
        # cuBLAS is deterministic with this workspace only (read at its
        # first use).
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.backends.cudnn.deterministic = was[2]
        torch.set_num_threads(was[3])


def train(
    config: Union[str, Config],
    work_dir: str,
    options: Optional[dict] = None,
    reuse: bool = True,
) -> str:
    """Trains ``config`` into ``work_dir``; returns the final checkpoint.

    With ``reuse``, a finished run in ``work_dir`` (its last checkpoint at
    ``train_cfg.max_iters``) is taken as it is.
    """
    cfg = _load_cfg(config, work_dir, options)
    final = osp.join(work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
    if reuse and osp.isfile(final):
        say(f'reusing {final}')
        return final
    build_runner(cfg).train()
    if not osp.isfile(final):
        raise RuntimeError(
            f'training {cfg.filename} ended without {final}; '
            'set a CheckpointHook interval that divides '
            'train_cfg.max_iters'
        )
    return final


def evaluate_levels(
    config: Union[str, Config],
    checkpoint: str,
    work_dir: str,
    options: Optional[dict] = None,
    return_model: bool = False,
):
    """mIoU clean and per (distortion type, level) of a checkpoint.

    The config's test dataloader sweeps the distortion space
    (``DistortionSweepDataset``) and its test evaluator is a
    ``DistortionIoUMetric``; its report is returned (and kept as
    ``work_dir/levels.json``); with ``return_model``, as
    ``(report, model)``.
    """
    cfg = _load_cfg(config, work_dir, options)
    if cfg.test_evaluator.get('type') != 'DistortionIoUMetric':
        raise ValueError(
            f'{cfg.filename}: test_evaluator must be a '
            'DistortionIoUMetric to report per-level mIoU'
        )
    report_file = osp.join(work_dir, 'levels.json')
    cfg.test_evaluator['output_file'] = report_file
    cfg.load_from = checkpoint
    runner = build_runner(cfg)
    runner.test()
    with open(report_file, encoding='utf-8') as f:
        report = json.load(f)
    return (report, runner.model) if return_model else report


@quiet_while_running
def run_gearnn(
    base_config: str,
    gear_config: str,
    work_dir: str,
    method: str = 'fisher',
    budget: float = 0.002,
    selection_steps: int = 8,
    base_options: Optional[dict] = None,
    gear_options: Optional[dict] = None,
    reuse_base: bool = True,
    base_checkpoint: Optional[str] = None,
    seed: int = 0,
    deterministic: bool = True,
    threads: Optional[int] = 1,
) -> dict:
    """The whole GearNN job; returns the per-level reports and artefacts.

    1. train the clean base with ``base_config`` (reused when present, or
       taken from ``base_checkpoint``);
    2. select the adaptor under ``budget`` (fraction of the model) with the
       scoring ``method``;
    3. train every gear with ``gear_config`` on the frozen base;
    4. evaluate the clean model and GearNN on every (type, level);
    5. write ``summary.md``, ``summary.json`` and ``miou_vs_level.png``.

    ``seed`` seeds every stage (each run's ``randomness``, its data workers
    included, and the selection's batches); ``deterministic`` runs torch's
    deterministic algorithms; ``threads`` fixes torch's CPU threads (1: the
    same figures on any number of cores, and no threads fighting the data
    workers; ``None``: torch's own count, which follows the cores and
    ``OMP_NUM_THREADS``). The same three give the same figures run to run.
    """
    with (
        reproducible(deterministic, threads),
        quiet_console(
            verbose=console_is_verbose(),
            warnings_file=osp.join(work_dir, WARNINGS_LOG),
        ),
    ):
        return _run_gearnn(
            base_config,
            gear_config,
            work_dir,
            method=method,
            budget=budget,
            selection_steps=selection_steps,
            base_options=seeded_options(base_options, seed, deterministic),
            gear_options=seeded_options(gear_options, seed, deterministic),
            reuse_base=reuse_base,
            base_checkpoint=base_checkpoint,
            seed=seed,
        )


def seeded_options(
    options: Optional[dict], seed: int, deterministic: bool
) -> dict:
    """``options`` after a run's seed and, when ``deterministic``, no cuDNN
    benchmark (it picks algorithms by timing); the options win.

    mmengine's own ``randomness.deterministic`` is left alone: it turns
    torch's deterministic algorithms on strictly, and a GPU backward
    without one would fail (:func:`reproducible` turns them on).
    """
    seeded = {'randomness.seed': seed}
    if deterministic:
        seeded['env_cfg.cudnn_benchmark'] = False
    return {**seeded, **(options or {})}


def _run_gearnn(
    base_config: str,
    gear_config: str,
    work_dir: str,
    method: str,
    budget: float,
    selection_steps: int,
    base_options: dict,
    gear_options: dict,
    reuse_base: bool,
    base_checkpoint: Optional[str],
    seed: int,
) -> dict:
    from ..selection import run_selection_from_config

    init_default_scope('mmseg')
    start = time.time()
    timings: Dict[str, float] = {}
    base_dir = osp.join(work_dir, 'base')
    base_cfg = _load_cfg(base_config, base_dir, base_options)

    if base_checkpoint is None:
        stage(
            1,
            STAGES,
            'base model: training '
            f'{base_cfg.train_cfg.max_iters} iterations on clean images',
        )
        base_ckpt = train(base_cfg, base_dir, reuse=reuse_base)
    else:
        if not osp.isfile(base_checkpoint):
            raise FileNotFoundError(
                f'base checkpoint not found: {base_checkpoint}'
            )
        stage(1, STAGES, f'base model: {base_checkpoint}')
        base_ckpt = base_checkpoint
    timings['base_training_s'] = time.time() - start

    stage(
        2,
        STAGES,
        f'adaptor: scoring with {method}, budget {budget:.2%} of the model '
        'per gear',
    )
    t = time.time()
    selection_file = osp.join(work_dir, 'selection.json')
    with quiet_console(
        verbose=console_is_verbose(),
        log_file=osp.join(work_dir, 'selection.log'),
    ):
        selection = run_selection_from_config(
            base_cfg,
            base_ckpt,
            method,
            config_path=base_config,
            budget=budget,
            steps=selection_steps,
            seed=seed,
            out=selection_file,
        )
    used = selection.get('budget', {}).get('used_fraction')
    say(
        f'      {adaptor_size_text(selection["selected"], used)}: '
        f'{selection_file}'
    )
    timings['selection_s'] = time.time() - t

    options = dict(gear_options or {})
    options.update({'load_from': base_ckpt, 'model.adaptor': selection_file})
    gears_dir = osp.join(work_dir, 'gears')
    gear_cfg = _load_cfg(gear_config, gears_dir, options)
    stage(
        3,
        STAGES,
        'gears: training one adaptor per distortion level, '
        f'{gear_cfg.train_cfg.max_iters} iterations',
    )
    t = time.time()
    gear_ckpt = train(gear_cfg, gears_dir, reuse=False)
    timings['gear_training_s'] = time.time() - t

    stage(
        4,
        STAGES,
        'evaluation: the clean model, then GearNN, on every distortion level',
    )
    t = time.time()
    reports = {
        'clean model': evaluate_levels(
            base_config,
            base_ckpt,
            osp.join(work_dir, 'eval_base'),
            base_options,
        ),
        'GearNN': evaluate_levels(
            gear_config,
            gear_ckpt,
            osp.join(work_dir, 'eval_gearnn'),
            dict(gear_options or {}, **{'model.adaptor': selection_file}),
        ),
    }
    timings['evaluation_s'] = time.time() - t
    timings['total_s'] = time.time() - start

    levels = {name: r['levels'] for name, r in reports.items()}
    clean = {name: r['clean'] for name, r in reports.items()}
    table = markdown_table(levels, clean=clean)
    png = plot_miou_vs_level(
        levels, osp.join(work_dir, 'miou_vs_level.png'), clean=clean
    )
    summary = dict(
        reports=reports,
        selection=dict(
            file=selection_file,
            method=method,
            budget_asked=budget,
            used_fraction=selection['budget']['used_fraction']
            if 'budget' in selection
            else None,
            num_tensors=len(selection['selected']),
        ),
        checkpoints=dict(
            base=base_ckpt,
            gears=gear_ckpt,
            gears_file=osp.join(gears_dir, 'gears.pth'),
        ),
        plot=png,
        timings_s=timings,
        reproducibility=dict(
            seed=seed,
            deterministic=torch.are_deterministic_algorithms_enabled(),
            threads=torch.get_num_threads(),
        ),
    )
    atomic_write(osp.join(work_dir, 'summary.md'), table + '\n')
    atomic_write(
        osp.join(work_dir, 'summary.json'), json.dumps(summary, indent=2)
    )
    say('\nmIoU (%) per distortion type and level:\n' + table)
    for name, r in reports.items():
        say(
            f'{name}: clean {r["clean"]:.2f}, mean over distorted levels '
            f'{r["mean_distorted"]:.2f}'
        )
    say(
        f'plot: {png}; summary: {osp.join(work_dir, "summary.md")}; '
        f'total {timings["total_s"] / 60:.1f} min'
    )
    notices = osp.join(work_dir, WARNINGS_LOG)
    say(
        f"mmengine's full logs and dumped configs: under {work_dir}"
        + (f'; third-party notices: {notices}' if osp.isfile(notices) else '')
    )
    return summary
