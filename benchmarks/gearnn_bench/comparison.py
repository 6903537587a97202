"""The robustness comparison: every method of :data:`METHODS` on a
CamVid-layout folder, from one cached clean base model.

Every method is a configuration of the same machinery, trained from the
same clean base for the same number of iterations and evaluated on the
``val`` split clean and at every (type, level) of the distortion space:

===================  =================================================
clean                the base model, trained on undistorted frames
mixed_aug            the base fine-tuned on randomly distorted frames
stability            the base fine-tuned with the stability loss
bn_stats             one gear per level holding BN affine and statistics
full_finetune        one gear per level holding every tensor
gearnn               one gear per level holding the tensors selected by
                     Fisher scores under ``profile.budget``
gearnn_{scoring}     the same with another scoring method
random_selection     the same budget filled at random
online_bn, tent      label-free test-time adaptation of the base
gearnn_distill, ...  gear recipe candidates
===================  =================================================

Every evaluation on val keeps each frame's class areas, from which the
goals' 95% bootstrap intervals over val frames are drawn (seeds averaged
on each draw; :mod:`.goals`).

With a tuning profile (``profile.tune``) every method trains on the
fitting part of ``train``; each method's grid is tried on the tuning part
(:mod:`.tuning`), the best point's model is reported on val, and a seeded
method runs again with every other seed of the profile at that point.

Call flow of :meth:`CamVidBenchmark.run`::

    train_base ─> for each method: run_method
                    ├─ per grid point: _run(point, seed 0, split tune)
                    ├─ val: the best point's model, evaluated
                    └─ per other seed: _run(best point, seed, split val)
               ─> budget curve (selected_gears per scoring and budget)
               ─> results dict (tuning, candidates)
               ─> bootstrap draws over val frames ─> goals
"""

import os.path as osp
import statistics
import time
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmengine.registry import init_default_scope

from .corruption_intervals import (
    CLEAN_GROUP,
    bootstrap_measures,
    distortion_measures,
    load_frame_areas,
)
from .goals import evaluate_goals
from .methods import METHODS, RECIPE, Method, check_methods, with_bases
from .provenance import git_commit, machine
from .stages import SPLIT, STAGE_CONFIGS, TUNE_SPLIT, BenchmarkStages
from .tuning import grid_points, point_label

CURVE_FIELDS = ('mean_miou', 'clean_miou', 'adaptor_fraction')
# The goals' bootstrap intervals over val frames.
INTERVAL_LEVEL = 0.95
INTERVAL_DRAWS = 1000


def seed_summary(entries: Sequence[dict]) -> dict:
    """The seed-0 entry with the mean over seeds as ``mean_miou``, each
    seed's mean in ``seeds`` and their sample standard deviation in
    ``mean_miou_std`` (0 for one seed)."""
    means = [e['mean_miou'] for e in entries]
    return dict(
        entries[0],
        mean_miou=statistics.fmean(means),
        seeds=means,
        mean_miou_std=statistics.stdev(means) if len(means) > 1 else 0.0,
    )


class CamVidBenchmark(BenchmarkStages):
    """Runs every method of the comparison and returns the results.

    Args:
        data_root (str): a CamVid-layout folder (``train``,
            ``trainannot``, ``val``, ``valannot``).
        work_dir (str): where stages train, evaluate and cache.
        configs (dict): config paths: ``base`` (the clean model),
            ``gearnn`` (gear training) and every method's own.
        profile (BenchmarkProfile | str): how much to run.
        base_checkpoint (str, optional): a trained base to use instead of
            training one.
        methods (Sequence[Method]): the methods compared (the profile's
            ``methods`` narrows them).
    """

    def __init__(
        self,
        data_root: str,
        work_dir: str,
        configs: Dict[str, str],
        profile='full',
        base_checkpoint: Optional[str] = None,
        methods: Sequence[Method] = METHODS,
    ) -> None:
        check_methods(methods)
        super().__init__(
            data_root,
            work_dir,
            configs,
            profile,
            base_checkpoint,
            required_configs={*STAGE_CONFIGS, *(m.config for m in methods)},
            frame_areas=True,
        )
        if self.profile.methods is not None:
            methods = with_bases(self.profile.methods, methods)
        self.methods = tuple(methods)
        # method -> grid, tuning-split mean per point, chosen point.
        self.tuning: Dict[str, dict] = {}
        # results name -> its val stage of each seed (frame areas).
        self.val_stages: Dict[str, List[str]] = {}

    def _options(self, method: Method, point=None, seed: int = 0) -> dict:
        options = dict(method.options)
        for option, field in method.profile_options.items():
            options[option] = getattr(self.profile, field)
        options.update(point or {})
        if seed:
            options['randomness.seed'] = seed
        return options

    def _names(self, method: Method) -> List[Tuple[str, Optional[str]]]:
        """``(results name, scoring)`` of each model the method makes."""
        if method.kind != 'selected_gears':
            return [(method.name, None)]
        scorings = self.profile.scorings
        if method.scoring is not None:
            scorings = (method.scoring,)
        elif not method.every_scoring:
            scorings = scorings[:1]
        return [
            (self.scoring_name(method, i, scoring), scoring)
            for i, scoring in enumerate(scorings)
        ]

    def _run(
        self,
        method: Method,
        checkpoints: Dict[str, str],
        point: dict,
        seed: int,
        split: str,
    ) -> Dict[str, Tuple[str, dict]]:
        """One run of ``method`` at grid ``point`` and ``seed``, evaluated
        on ``split``: ``{results name: (stage, entry)}``."""
        base = checkpoints[method.base]
        options = self._options(method, point, seed)
        tag = point_label(point) + (f'_seed{seed}' if seed else '')
        runs = {}
        for name, scoring in self._names(method):
            stage = name + tag
            if method.kind == 'evaluate':
                entry = self.evaluate_model(
                    stage, method.config, base, options, split
                )
            elif method.kind == 'fine_tune':
                entry = self.fine_tuned(
                    stage, method.config, base, options, split
                )
            elif method.kind == 'gears':
                entry = self.gears(
                    stage,
                    base,
                    method.adaptor,
                    options=options,
                    key=method.config,
                    split=split,
                )
            else:
                prefix = '' if method.base == 'base' else f'on_{method.base}_'
                entry = self.selected_gears(
                    scoring,
                    self.profile.budget,
                    base,
                    prefix,
                    name=stage,
                    seed=seed,
                    options=options,
                    key=method.config,
                    split=split,
                )
            runs[name] = (stage, entry)
        return runs

    def run_method(
        self, method: Method, checkpoints: Dict[str, str]
    ) -> Dict[str, dict]:
        """Run ``method``'s stages: tuning, val and seeds; ``checkpoints``
        holds the model of each earlier method by name (``'base'`` the
        clean base) and gains this one's. Returns the results entries it
        adds, by name."""
        point: Dict[str, Any] = {}
        if self.profile.tune and method.grid:
            point, chosen = self._tune(method, checkpoints)
            if self.profile.tune_only:
                if method.kind == 'fine_tune':
                    checkpoints[method.name] = self.fine_tuned_checkpoint(
                        chosen[method.name][0], TUNE_SPLIT
                    )
                return {}
            runs = {}
            for name, (stage, entry) in chosen.items():
                if method.kind == 'evaluate':
                    runs[name] = self._run(
                        method, checkpoints, point, 0, SPLIT
                    )[name]
                    continue
                ckpt = self.fine_tuned_checkpoint(stage, TUNE_SPLIT)
                runs[name] = (
                    stage,
                    self.evaluated(
                        stage,
                        method.config,
                        ckpt,
                        dict(
                            self._options(method, point),
                            **self._adaptor_option(method, entry),
                        ),
                    ),
                )
            trained_in = TUNE_SPLIT
        else:
            runs = self._run(method, checkpoints, point, 0, SPLIT)
            trained_in = SPLIT
        if method.kind == 'fine_tune':
            stage = runs[method.name][0]
            checkpoints[method.name] = self.fine_tuned_checkpoint(
                stage, trained_in
            )
        seeds = self.profile.seeds if method.seeded else (0,)
        per_seed = {name: [entry] for name, (_, entry) in runs.items()}
        stages = {name: [stage] for name, (stage, _) in runs.items()}
        for seed in seeds:
            if seed == 0:
                continue
            for name, (stage, entry) in self._run(
                method, checkpoints, point, seed, SPLIT
            ).items():
                per_seed[name].append(entry)
                stages[name].append(stage)
        self.val_stages.update(stages)
        entries = {}
        for name, seeded in per_seed.items():
            entries[name] = seed_summary(seeded)
            if point:
                entries[name]['chosen'] = point
        return entries

    def _adaptor_option(self, method: Method, entry: dict) -> dict:
        """The ``model.adaptor`` option a gear model was trained with."""
        if method.kind == 'gears':
            return {'model.adaptor': method.adaptor}
        if method.kind == 'selected_gears':
            return {'model.adaptor': entry['selection']['file']}
        return {}

    def _tune(self, method: Method, checkpoints: Dict[str, str]):
        """Every grid point of ``method`` on the tuning split; records the
        grid, each point's mean and the best point, and returns ``(best
        point, its runs)``. A method making several models (scorings) is
        tuned on its first."""
        points = grid_points(method.grid, self.profile.tune_points)
        scores, runs = {}, []
        for point in points:
            run = self._run(method, checkpoints, point, 0, TUNE_SPLIT)
            first = next(iter(run.values()))[1]
            scores[point_label(point).lstrip('_') or 'default'] = first[
                'mean_miou'
            ]
            runs.append(run)
        best = max(
            range(len(points)),
            key=lambda i: next(iter(runs[i].values()))[1]['mean_miou'],
        )
        self.tuning[method.name] = dict(
            grid={k: list(v) for k, v in method.grid.items()},
            tune_mean_miou=scores,
            chosen=points[best],
            tune_best=next(iter(runs[best].values()))[1]['mean_miou'],
        )
        return points[best], runs[best]

    @staticmethod
    def scoring_name(method: Method, index: int, scoring: str) -> str:
        """The results name of ``method`` run with the ``index``-th
        scoring: the first keeps the method's name."""
        return method.name if index == 0 else f'{method.name}_{scoring}'

    def budget_curve(self, base: str, methods: Dict[str, dict]):
        """Mean mIoU of every curve scoring at every curve budget (at the
        gear config's values); each selection method on the clean base
        fills in the point of the profile's budget."""
        profile = self.profile
        curve: Dict[str, Dict[str, dict]] = {}
        for scoring in profile.curve_scorings:
            for budget in profile.curve_budgets:
                entry = self.selected_gears(scoring, budget, base)
                curve.setdefault(scoring, {})[f'{budget:g}'] = {
                    k: entry[k] for k in CURVE_FIELDS
                }
        for method in self.methods:
            if method.kind != 'selected_gears' or method.base != 'base':
                continue
            if method.config != 'gearnn':
                continue
            for name, scoring in self._names(method):
                if name not in methods:
                    continue
                curve.setdefault(scoring, {}).setdefault(
                    f'{profile.budget:g}',
                    {k: methods[name][k] for k in CURVE_FIELDS},
                )
        return curve

    def candidates(self) -> dict:
        """The gear recipe candidates' best tuning-split means and the
        winner (empty without tuning)."""
        table = {
            m.name: dict(
                tune_mean_miou=self.tuning[m.name]['tune_best'],
                chosen=self.tuning[m.name]['chosen'],
            )
            for m in self.methods
            if m.candidate and m.name in self.tuning
        }
        if not table:
            return {}
        winner = max(table, key=lambda n: table[n]['tune_mean_miou'])
        return dict(
            split=TUNE_SPLIT, table=table, winner=winner, shipped=RECIPE
        )

    def frame_draws(self, names) -> Tuple[Dict[str, dict], dict]:
        """The bootstrap draws over val frames of each method of ``names``
        (clean and mean mIoU, seeds averaged), from its evaluations' frame
        areas, and what they are (level, draws, frames, the methods left
        out for lack of frame areas)."""
        runs, missing = {}, []
        for name in names:
            stages = self.val_stages.get(name, [])
            files = [self.frame_areas_file(s) for s in stages]
            if not files or not all(osp.isfile(f) for f in files):
                missing.append(name)
                continue
            runs[name] = [load_frame_areas([f]) for f in files]
        about = dict(
            level=INTERVAL_LEVEL,
            draws=INTERVAL_DRAWS,
            over='val frames, paired across methods; seeds averaged on '
            'each draw',
            frames=None,
            without_frame_areas=missing,
        )
        if not runs:
            return {}, about
        first = next(iter(runs.values()))[0]
        about['frames'] = len(first.get(CLEAN_GROUP, {}))
        draws = bootstrap_measures(
            runs, distortion_measures, draws=INTERVAL_DRAWS
        )
        return draws, about

    def run(self, command: str = '', repo_dir: str = '.') -> dict:
        """Run every stage (reusing cached ones) and return the results."""
        init_default_scope('mmseg')
        start = time.time()
        commit = git_commit(repo_dir)  # the code this run starts with
        profile = self.profile
        base = self.train_base()
        checkpoints = dict(base=base)
        self.tuning = {}
        self.val_stages = {}
        methods: Dict[str, dict] = {}
        for method in self.methods:
            if method.only_if and not getattr(profile, method.only_if):
                continue
            methods.update(self.run_method(method, checkpoints))
        if RECIPE in methods:
            methods['gearnn_recipe'] = dict(methods[RECIPE], recipe_of=RECIPE)
            self.val_stages['gearnn_recipe'] = self.val_stages[RECIPE]
        curve = self.budget_curve(base, methods)
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
            tuning=dict(
                split=self.splits,
                methods=self.tuning,
            )
            if self.splits
            else None,
            candidates=self.candidates(),
            methods=methods,
            budget_curve=curve,
            stages=dict(self.cache.stages),
        )
        draws, results['intervals'] = self.frame_draws(methods)
        results['goals'] = evaluate_goals(results, draws=draws)
        return results
