"""The 20-level CamVid benchmark's goals judged on bootstrap intervals over
val frames (seeds averaged), from frame areas as ``FrameAreasHook`` keeps
them: a margin is met only when its interval clears the target."""

import numpy as np
import pytest
import torch

from gearnn_bench.comparison import seed_summary
from gearnn_bench.corruption_intervals import (
    CLEAN_GROUP,
    add_frame_areas_hook,
    bootstrap_measures,
    distortion_measures,
)
from gearnn_bench.goals import evaluate_goals
from mmseg_gearnn.evaluation.metrics import DistortionIoUMetric

FRAMES = 12
# Two types of the 20-level space, as FrameAreasHook names the groups.
GROUPS = ('jpeg|10', 'jpeg|5', 'gaussian_noise|0.1')


def _frame(iou, classes=3):
    """One frame's areas (intersection, union, prediction, label) whose
    every class has IoU ``iou`` (100 pixels of union a class)."""
    inter = np.full(classes, 100.0 * iou)
    union = np.full(classes, 100.0)
    return np.stack([inter, union, union, union])


def _run(clean, distorted):
    """``{group: {frame: areas}}``: every frame at IoU ``clean[f]`` clean
    and ``distorted[f]`` at every distorted level."""
    run = {CLEAN_GROUP: {}}
    for f in range(FRAMES):
        run[CLEAN_GROUP][f'f{f}.png'] = _frame(clean[f])
        for group in GROUPS:
            run.setdefault(group, {})[f'f{f}.png'] = _frame(distorted[f])
    return run


def _entry(draws, fraction=0.0):
    return dict(
        mean_miou=float(draws['mean_miou'][0]),
        clean_miou=float(draws['clean_miou'][0]),
        adaptor_fraction=fraction,
        memory_ratio=1.0,
        levels={},
    )


def test_bootstrap_row_zero_is_the_evaluation_reports_mean():
    rng = np.random.default_rng(1)
    run = _run(rng.uniform(0.5, 0.7, FRAMES), rng.uniform(0.2, 0.5, FRAMES))
    # The first class is absent from one group (no union): skipped there,
    # as the evaluation's report skips it.
    for areas in run['jpeg|5'].values():
        areas[:, 0] = 0.0
    draws = bootstrap_measures({'m': [run]}, distortion_measures, draws=50)
    rows = []
    for group, frames in run.items():
        key = ('clean', None) if group == CLEAN_GROUP else group.split('|')
        for areas in frames.values():
            rows.append((tuple(key), *(torch.from_numpy(a) for a in areas)))
    report = DistortionIoUMetric().report(rows)
    assert draws['m']['mean_miou'][0] == pytest.approx(
        report['mean_distorted'], abs=0.01
    )
    assert draws['m']['clean_miou'][0] == pytest.approx(
        report['clean'], abs=0.01
    )


def test_a_20_level_margin_straddling_its_target_is_not_met():
    clean = np.full(FRAMES, 0.6)
    mixed = np.full(FRAMES, 0.3)
    # +9 points on half the frames, +1 on the other half: +5 over mixed
    # augmentation on the frames as measured (the goal asks +4.8), but
    # the frames disagree, so the interval reaches below 4.8.
    lead = np.where(np.arange(FRAMES) % 2 == 0, 0.09, 0.01)
    runs = dict(
        clean=[_run(clean, np.full(FRAMES, 0.2))],
        mixed_aug=[_run(clean - 0.02, mixed)],
        # 6 points below the recipe on every frame: no draw moves that
        stability=[_run(clean - 0.02, mixed + lead - 0.06)],
        # two seeds, half a point either side of the lead: their mean
        # counts on each draw; clean half a point below the clean model
        gearnn_recipe=[
            _run(clean - 0.005, mixed + lead - 0.005),
            _run(clean - 0.005, mixed + lead + 0.005),
        ],
    )
    draws = bootstrap_measures(runs, distortion_measures, draws=1000)
    methods = {name: _entry(d) for name, d in draws.items()}
    methods['gearnn_recipe'] = dict(
        seed_summary(
            [
                dict(methods['gearnn_recipe'], mean_miou=m)
                for m in (
                    methods['gearnn_recipe']['mean_miou'] - 0.5,
                    methods['gearnn_recipe']['mean_miou'] + 0.5,
                )
            ]
        ),
        adaptor_fraction=0.0015,
    )
    results = dict(methods=methods, profile='quick')
    goals = {
        g['goal'].split(' (')[0]: g
        for g in evaluate_goals(results, draws=draws)
    }
    over_mixed = goals['gearnn_recipe - mixed_aug']
    assert over_mixed['value'] == pytest.approx(5.0)
    low, high = over_mixed['interval']
    assert low < 4.8 < high
    assert over_mixed['met_by_value'] and not over_mixed['met']
    assert over_mixed['short_by'] == pytest.approx(4.8 - low, abs=1e-4)
    # the lead over stability is +6 on every frame: met outside the
    # interval, which is that one value
    over_stability = goals['gearnn_recipe - stability']
    assert over_stability['value'] == pytest.approx(6.0)
    assert over_stability['interval'] == pytest.approx([6.0, 6.0])
    assert over_stability['met'] and over_stability['short_by'] == 0
    # clean mIoU within 1 of the clean model's, on every draw
    clean_goal = goals['gearnn_recipe clean - clean model clean']
    assert clean_goal['value'] == pytest.approx(-0.5)
    assert clean_goal['interval'] == pytest.approx([-0.5, -0.5])
    assert clean_goal['met']
    # the adaptor has no interval: one number per model
    adaptor = goals['gearnn_recipe adaptor_fraction']
    assert adaptor['met'] and 'interval' not in adaptor


def test_a_gap_at_most_its_target_is_judged_on_the_upper_end():
    clean = np.linspace(0.4, 0.7, FRAMES)
    shifted = clean + np.where(np.arange(FRAMES) % 2 == 0, 0.0, 0.02)
    runs = dict(
        clean=[_run(clean, clean - 0.2)],
        gearnn=[_run(shifted, clean - 0.1)],
    )
    draws = bootstrap_measures(runs, distortion_measures, draws=500)
    methods = {name: _entry(d) for name, d in draws.items()}
    results = dict(methods=methods, profile='quick')
    (gap,) = [
        g
        for g in evaluate_goals(results, draws=draws)
        if g['goal'].startswith('|gearnn clean')
    ]
    # one point apart on the frames as measured; the goal asks 0
    assert gap['value'] == pytest.approx(1.0)
    assert not gap['met']
    assert gap['short_by'] == pytest.approx(gap['interval'][1])


def test_frame_areas_hook_is_added_once():
    from mmengine.config import Config

    cfg = Config(dict(test_evaluator=dict(ignore_index=7)))
    add_frame_areas_hook(cfg)
    add_frame_areas_hook(cfg)
    assert cfg.custom_hooks == [dict(type='FrameAreasHook', ignore_index=7)]
