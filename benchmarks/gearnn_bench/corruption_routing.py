"""Routing the corruptions no gear was trained on, as cached stages.

The distortion estimator of a gear table (trained on ``train_fit`` frames
under the trained corruptions), where it sends each evaluated corruption,
and the ``ConfidentGearRouter``'s threshold.

The threshold is chosen on the tuning split (``train_tune`` frames, never
val) by leave-one-corruption-out (:meth:`RoutingStages.routing_threshold`):
for each trained corruption ``c``, an estimator fitted without ``c`` (on
the gear table less ``c``'s gear) routes the tuning frames under ``c`` (at
every severity) as it would an unseen corruption; each threshold's score
is the mean over folds of ``c``'s mIoU when the frames whose estimate is
less probable than the threshold run on the base and the others on their
estimated gear. The held-out corruptions and glass blur are never seen by
the choice.
"""

import os.path as osp
from typing import Dict, List

import mmcv
import numpy as np
import torch
from mmengine.registry import init_default_scope
from mmseg.evaluation import IoUMetric
from mmseg.registry import DATASETS

from mmseg_gearnn.apis.estimator import distorted_features, fit_estimator
from mmseg_gearnn.apis.model_init import init_gearnn_model
from mmseg_gearnn.distortions import CLEAN, build_space, corruption_of
from mmseg_gearnn.models import DistortionEstimator

from .corruption_cache import library_version
from .corruption_profile import CLEAN_GEAR_LEVEL
from .corruption_recipe import RECIPE

# The thresholds the leave-one-corruption-out choice tries (1.0: never a
# gear for an unknown corruption).
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(21))
# Samples per forward on the tuning split.
FORWARD_BATCH = 8


def _miou(areas: np.ndarray) -> float:
    inter, union = areas[0], areas[1]
    valid = union > 0
    return float(100 * np.mean(inter[valid] / union[valid]))


class RoutingStages:
    """The routing stages, mixed into ``CorruptionStages`` (which gives
    the cache, the configs and the frames)."""

    def estimator(self, mapping: str) -> dict:
        """A distortion estimator for the gear table of ``mapping``,
        trained on ``train_fit`` frames at the inference resolution under
        every trained corruption and severity, each labelled with its
        nearest gear (its corruption's, where severities share one). The
        recipe's router maps its gears to the recipe's table, which also
        holds the clean gear (clean frames: gear 0 here)."""
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

    # -- the threshold: leave one corruption out on the tuning split -----

    def routing_threshold(self, name: str, ckpt: str, options: dict):
        """Stage ``{name}_threshold`` (see the module docstring)."""
        p = self.corruption_profile
        est = self.estimator(p.gear_mappings[0])

        def run(stage_dir):
            return self._choose_threshold(stage_dir, ckpt, options)

        return self.cache.run(
            f'{name}_threshold',
            self._inputs(
                method=name,
                checkpoint=ckpt,
                estimator=est['file'],
                tune_images=list(p.tune_images),
                thresholds=list(THRESHOLDS),
                folds='all_base: every frame on the base',
                config=self._config_digest('gearnn_distill', options),
            ),
            run,
        )

    def _fold_estimators(self, space) -> Dict[str, DistortionEstimator]:
        """One estimator per trained corruption, fitted without it (on
        the estimator's ``train_fit`` frames), labelled with the gears of
        ``space``."""
        p = self.corruption_profile
        h, w = self.profile.crop_size or (240, 320)
        import mmcv

        images = [
            mmcv.imresize(img, (w, h))
            for img in self._train_frames(p.estimator_images)
        ]
        train_space = build_space(p.train_space())
        probe = DistortionEstimator(space)
        features, gears = distorted_features(
            train_space, images, p.seed, probe.max_side
        )
        levels = [train_space.level_of(int(g)) for g in gears]
        of = np.array(
            [corruption_of(t) if t != CLEAN else '' for t, _ in levels]
        )
        folds = {}
        for corruption in p.trained:
            # The gear table without the left-out corruption's gear.
            fold_space = build_space(
                dict(
                    distortions={
                        t: v
                        for t, v in space.distortions.items()
                        if corruption_of(t) != corruption
                    },
                    snap=space.snap,
                )
            )
            keep = of != corruption
            labels = np.array(
                [fold_space.gear_id(*lv) for lv, k in zip(levels, keep) if k]
            )
            estimator = DistortionEstimator(fold_space)
            fit_estimator(estimator, features[keep], labels, seed=p.seed)
            folds[corruption] = estimator
        return folds

    def _choose_threshold(self, stage_dir: str, ckpt: str, options: dict):
        from .corruption_stages import SWEEP_KEY

        init_default_scope('mmseg')
        p = self.corruption_profile
        # Forwards on a chosen gear: gear ids as metadata, gear 0 the base.
        cfg = self._cfg(
            'gearnn_distill',
            stage_dir,
            None,
            dict(
                options,
                **{
                    SWEEP_KEY: 'trained',
                    'model.router': dict(type='MetadataGearRouter'),
                },
            ),
            split='tune',
        )
        model = init_gearnn_model(cfg, ckpt)
        space = model.space
        clean_gear = space.gear_id(*CLEAN_GEAR_LEVEL)
        folds = self._fold_estimators(
            build_space(p.gear_space(p.gear_mappings[0]))
        )
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        num_classes = len(dataset.metainfo['classes'])
        ignore = cfg.test_evaluator.get('ignore_index', 255)
        # Per corruption: items, their fold estimate and confidence.
        items: Dict[str, List] = {c: [] for c in p.trained}
        for i in range(len(dataset)):
            item = dataset[i]
            record = item['data_samples'].metainfo['distortion']
            corruption = corruption_of(record.get('type') or '')
            if corruption in items:
                items[corruption].append(item)

        def areas_of(batch, gears) -> List[np.ndarray]:
            samples = []
            for item, gear in zip(batch, gears):
                sample = item['data_samples'].clone()
                sample.set_metainfo(dict(distortion=dict(gear=int(gear))))
                samples.append(sample)
            with torch.no_grad():
                outs = model.test_step(
                    dict(
                        inputs=[b['inputs'] for b in batch],
                        data_samples=samples,
                    )
                )
            result = []
            for out in outs:
                pred = out.pred_sem_seg.data.squeeze()
                label = out.gt_sem_seg.data.squeeze().to(pred)
                result.append(
                    np.stack(
                        [
                            a.numpy()
                            for a in IoUMetric.intersect_and_union(
                                pred, label, num_classes, ignore
                            )
                        ]
                    )
                )
            return result

        def forward(its, gears):
            out = []
            for k in range(0, len(its), FORWARD_BATCH):
                out += areas_of(
                    its[k : k + FORWARD_BATCH], gears[k : k + FORWARD_BATCH]
                )
            return out

        scores = {t: [] for t in THRESHOLDS}
        per_fold = {}
        for corruption, its in items.items():
            estimator = folds[corruption]
            probs = estimator.predict_proba([it['inputs'] for it in its])
            best, gears = probs.max(dim=1)
            gears = [
                clean_gear
                if int(g) == 0
                else space.gear_id(*estimator.space.level_of(int(g)))
                for g in gears
            ]
            base = forward(its, [0] * len(its))
            geared = forward(its, gears)
            levels = [
                it['data_samples'].metainfo['distortion']['level']
                for it in its
            ]
            conf = best.numpy()

            def score(use):
                per_level = {}
                for k, level in enumerate(levels):
                    chosen = geared[k] if use[k] else base[k]
                    per_level.setdefault(level, []).append(chosen)
                return float(
                    np.mean([_miou(sum(a)) for a in per_level.values()])
                )

            fold = {}
            for t in THRESHOLDS:
                fold[t] = score(conf >= t)
                scores[t].append(fold[t])
            routed = {}
            for g in gears:
                label = space.level_of(g)[0]
                label = 'clean' if g == clean_gear else corruption_of(label)
                routed[label] = routed.get(label, 0) + 1
            per_fold[corruption] = dict(
                no_fallback=round(fold[0.0], 2),
                # every frame on the base (no threshold does that: an
                # estimate of probability 1.0 passes even 1.0)
                all_base=round(score(np.zeros(len(its), dtype=bool)), 2),
                median_confidence=round(float(np.median(conf)), 3),
                certain_share=round(float(np.mean(conf >= 1.0)), 3),
                routed=routed,
            )
        mean = {t: float(np.mean(v)) for t, v in scores.items()}
        threshold = max(THRESHOLDS, key=lambda t: (round(mean[t], 6), -t))
        for corruption, fold in per_fold.items():
            fold['chosen'] = round(
                scores[threshold][list(per_fold).index(corruption)], 2
            )
        return dict(
            threshold=threshold,
            score={f'{t:g}': round(v, 3) for t, v in mean.items()},
            folds=per_fold,
            tune_frames=len(p.tune_images),
            rule='leave one trained corruption out on the tuning split: '
            'mean over folds of the left-out corruption mIoU (mean over '
            'severities), frames below the threshold on the base',
        )

    # -- where the untrained corruptions go on val -----------------------

    def confident_routing(self, threshold: float) -> dict:
        """Where the recipe's estimator sends each untrained and held-out
        corruption on val at ``threshold``: ``{corruption: {gear's
        corruption, 'clean' (the clean gear) or 'base' (fallback):
        frames}}``, with and without the fallback, and the fallback's
        share of those frames."""
        p = self.corruption_profile
        est = self.estimator(p.gear_mappings[0])

        def run(stage_dir):
            from .corruption_stages import SWEEP_KEY

            estimator = DistortionEstimator.load(est['file'])
            space = estimator.space
            cfg = self._cfg('base', stage_dir, None, {SWEEP_KEY: 'untrained'})
            dataset = DATASETS.build(cfg.test_dataloader.dataset)
            with_fb: Dict[str, Dict[str, int]] = {}
            without: Dict[str, Dict[str, int]] = {}
            fallbacks = total = 0
            for i in range(len(dataset)):
                item = dataset[i]
                record = item['data_samples'].metainfo['distortion']
                truth = corruption_of(record.get('type') or '')
                if truth is None:
                    continue
                prob = estimator.predict_proba([item['inputs']])[0]
                gear = int(prob.argmax())
                name = (
                    'clean'
                    if gear == 0
                    else corruption_of(space.level_of(gear)[0])
                )
                cell = without.setdefault(truth, {})
                cell[name] = cell.get(name, 0) + 1
                if float(prob.max()) < threshold:
                    name = 'base'
                    fallbacks += 1
                total += 1
                cell = with_fb.setdefault(truth, {})
                cell[name] = cell.get(name, 0) + 1
            return dict(
                threshold=threshold,
                routed=with_fb,
                routed_no_fallback=without,
                fallback_share=round(fallbacks / max(total, 1), 4),
            )

        return self.cache.run(
            f'{RECIPE}_routing_t{threshold:g}',
            dict(
                estimator=est['file'],
                val_images=self.profile.val_images,
                space=p.eval_space('untrained'),
                threshold=threshold,
            ),
            run,
        )
