"""The CamVid-C benchmark (``benchmarks/camvid_c.py``): its profile, frame
cache, results entries and goals on hand-made inputs, the corruption
metrics of the robustness report, and ``--quick`` end to end on CamVid."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gearnn_bench.corruption_cache import (
    CachedRequestedDistortion,
    frame_key,
)
from gearnn_bench.corruption_intervals import bootstrap, interval
from gearnn_bench.corruption_profile import (
    PROFILES,
    CorruptionProfile,
    gear_count,
)
from gearnn_bench.corruption_report import (
    evaluate_goals,
    markdown,
    merge_seeds,
    method_entry,
)
from gearnn_bench.corruption_stages import METHOD_NAMES
from gearnn_bench.profiles import BenchmarkProfile
from mmseg_gearnn.distortions import build_space
from mmseg_gearnn.evaluation import write_robustness_report

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_KEYS = {
    'P',
    'mPC',
    'rPC',
    'mCE',
    'memory_ratio',
    'per_corruption',
    'held_out_mean',
}


def _profile(**kwargs):
    kwargs.setdefault('corruptions', ('gaussian_noise', 'glass_blur'))
    kwargs.setdefault('held_out', ('speckle_noise',))
    kwargs.setdefault('severities', (1, 5))
    return CorruptionProfile(stages=BenchmarkProfile(), **kwargs)


def test_shared_gears_route_every_severity_to_the_corruption():
    profile = _profile(untrained=('glass_blur',))
    space = build_space(profile.gear_space('per_corruption'))
    assert space.types == ['ic_gaussian_noise']  # glass blur is untrained
    assert space.gear_id('ic_gaussian_noise', 1) == 1
    assert space.gear_id('ic_gaussian_noise', 5) == 1
    per_level = build_space(profile.gear_space('per_severity'))
    assert per_level.num_gears == 1 + 2
    assert gear_count(profile, 'per_corruption') == 1
    assert gear_count(profile, 'per_severity') == 2
    untrained = build_space(profile.eval_space('untrained'))
    assert untrained.types == ['ic_glass_blur', 'ic_speckle_noise']
    # the full profile trains on every benchmark corruption but glass blur
    full = PROFILES['full']
    assert len(full.trained) == 14 and 'glass_blur' not in full.trained


def test_profile_rejects_unknown_names():
    with pytest.raises(ValueError, match='no benchmark corruption'):
        _profile(corruptions=('speckle_noise',))
    with pytest.raises(ValueError, match='unknown gear mapping'):
        _profile(gear_mappings=('per_frame',))
    with pytest.raises(ValueError, match='every benchmark corruption'):
        _profile(untrained=('gaussian_noise', 'glass_blur'))


def _levels(values):
    """{'ic_' + corruption: {severity: miou}} from {corruption: [m1, m5]}."""
    return {'ic_' + c: {'1': v[0], '5': v[1]} for c, v in values.items()}


def test_method_entry_reads_the_literature_metrics():
    profile = _profile()
    clean_levels = _levels(
        dict(
            gaussian_noise=[40, 20],
            glass_blur=[50, 30],
            speckle_noise=[45, 25],
        )
    )
    clean = dict(clean_miou=60.0, levels=clean_levels, memory_ratio=1.0)
    # a gear model: trained corruptions from one stage, the rest another
    gears = dict(
        clean_miou=60.0,
        levels=_levels(dict(gaussian_noise=[50, 40])),
        memory_ratio=1.002,
    )
    untrained = dict(
        clean_miou=None,
        levels=_levels(dict(glass_blur=[50, 30], speckle_noise=[55, 35])),
    )
    entry = method_entry(gears, untrained, clean_levels, profile)
    assert set(entry) == SCHEMA_KEYS
    # mPC over the 2 benchmark corruptions x 2 severities
    assert entry['mPC'] == pytest.approx((50 + 40 + 50 + 30) / 4)
    assert entry['rPC'] == pytest.approx(42.5 / 60, abs=1e-4)
    # CE: gaussian (50 + 60) / (60 + 80), glass 1.0
    assert entry['mCE'] == pytest.approx((110 / 140 + 1.0) / 2, abs=1e-4)
    assert entry['held_out_mean'] == pytest.approx(45.0)
    assert entry['per_corruption']['speckle_noise'] == {'1': 55, '5': 35}
    assert list(entry['per_corruption']) == [
        'gaussian_noise',
        'glass_blur',
        'speckle_noise',
    ]
    reference = method_entry(clean, None, clean_levels, profile)
    assert reference['mCE'] == pytest.approx(1.0)


def _results(gearnn_mpc, held):
    methods = {}
    for name in METHOD_NAMES:
        methods[name] = dict(
            P=60.0,
            mPC=40.0,
            rPC=40 / 60,
            mCE=1.0,
            memory_ratio=1.0,
            per_corruption={'gaussian_noise': {'1': 40.0, '5': 40.0}},
            held_out_mean=45.0,
        )
    methods['gearnn'].update(mPC=gearnn_mpc, held_out_mean=held)
    methods['gearnn']['rPC'] = gearnn_mpc / 60
    return dict(
        command='python benchmarks/camvid_c.py DIR',
        commit='abc',
        dirty=False,
        wall_time_s=1.0,
        split='val',
        corruptions=['gaussian_noise'],
        held_out=['speckle_noise'],
        methods=methods,
        choices=dict(untrained=['glass_blur']),
        gear_mappings={},
    )


def test_goals_say_met_or_short_by_how_much():
    results = _results(gearnn_mpc=54.0, held=43.5)
    results['methods']['gearnn_recipe'].update(
        mPC=44.0, P=59.5, rPC=44 / 59.5, held_out_mean=44.7
    )
    results['methods']['mixed_aug']['held_out_mean'] = 45.3
    goals = {(g['method'], g['goal']): g for g in evaluate_goals(results)}
    recipe = {k[1]: g for k, g in goals.items() if k[0] == 'gearnn_recipe'}
    assert recipe['mPC >= stability + 3']['met']
    assert recipe['mPC >= tent + 3']['met']
    assert recipe['rPC >= 0.90']['short_by'] == pytest.approx(
        0.9 - 44 / 59.5, abs=1e-4
    )
    assert recipe['P >= clean - 1']['met']
    # the best of stability (45.0) and mixed augmentation (45.3), less 0.5
    held = recipe['held-out >= max(stability, mixed_aug) - 0.5']
    assert held['value'] == pytest.approx(-0.6)
    assert held['short_by'] == pytest.approx(0.1)
    assert goals[('gearnn', 'held-out >= clean')]['short_by'] == 1.5
    results['goals'] = evaluate_goals(results)
    text = markdown(results)
    assert 'short by 1.5' in text
    assert 'python benchmarks/camvid_c.py DIR' in text
    assert 'glass_blur' in text


def _areas(per_frame_iou, classes=2):
    """Frame areas whose every class has IoU ``per_frame_iou[f]`` (union
    100 pixels a class)."""
    out = {}
    for f, iou in enumerate(per_frame_iou):
        inter = np.full(classes, 100.0 * iou)
        union = np.full(classes, 100.0)
        out[f'f{f}.png'] = np.stack([inter, union, union, union])
    return out


def _run(clean, noisy, held):
    return {
        'clean': _areas(clean),
        'ic_gaussian_noise|1': _areas(noisy),
        'ic_speckle_noise|1': _areas(held),
    }


def test_bootstrap_interval_over_frames():
    frames = 12
    rng = np.random.default_rng(0)
    noisy = rng.uniform(0.2, 0.6, frames)
    runs = dict(
        a=[_run([0.6] * frames, noisy, noisy)],
        # better by 0.05 on every frame: the margin cannot be drawn away
        better=[_run([0.6] * frames, noisy + 0.05, noisy)],
        # two seeds count as their mean on each draw
        seeded=[
            _run([0.6] * frames, noisy + 0.02, noisy),
            _run([0.6] * frames, noisy + 0.04, noisy),
        ],
    )
    draws = bootstrap(runs, ['gaussian_noise'], ['speckle_noise'], draws=300)
    # row 0 is the frames as measured
    assert draws['a']['mPC'][0] == pytest.approx(100 * noisy.mean())
    assert draws['a']['P'][0] == pytest.approx(60.0)
    margin = draws['better']['mPC'] - draws['a']['mPC']
    assert interval(margin) == pytest.approx((5.0, 5.0))
    assert interval(draws['seeded']['mPC'] - draws['a']['mPC']) == (
        pytest.approx((3.0, 3.0))
    )
    # a margin that varies by frame has an interval around its value
    low, high = interval(draws['a']['mPC'])
    assert low < 100 * noisy.mean() < high
    assert draws['a']['held_out_mean'][0] == pytest.approx(100 * noisy.mean())


def test_goal_met_only_outside_its_interval():
    results = _results(gearnn_mpc=54.0, held=43.5)
    results['methods']['gearnn_recipe']['mPC'] = 43.5  # 3.5 over stability
    n = 200
    draws = {
        name: dict(
            mPC=np.full(n, 40.0),
            P=np.full(n, 60.0),
            rPC=np.full(n, 40 / 60),
            held_out_mean=np.full(n, 45.0),
        )
        for name in METHOD_NAMES
    }
    # the recipe's margin over stability: 3.5 on the frames as measured,
    # from 1 to 6 over the draws
    draws['gearnn_recipe']['mPC'] = 40 + np.linspace(1, 6, n)
    goal = next(
        g
        for g in evaluate_goals(results, draws)
        if g['goal'] == 'mPC >= stability + 3'
    )
    assert goal['value'] == pytest.approx(3.5)
    assert goal['met_by_value'] and not goal['met']
    assert goal['interval'][0] < 3 < goal['interval'][1]
    assert goal['short_by'] == pytest.approx(3 - goal['interval'][0])


def test_seeds_merge_into_their_method():
    entry = dict(
        P=50.0,
        mPC=40.0,
        rPC=0.8,
        mCE=0.9,
        memory_ratio=1.0,
        per_corruption={'gaussian_noise': {'1': 40.0}},
        held_out_mean=30.0,
    )
    other = dict(
        entry,
        P=52.0,
        mPC=42.0,
        rPC=42 / 52,
        per_corruption={'gaussian_noise': {'1': 44.0}},
    )
    methods, seeds = merge_seeds(
        dict(clean=entry, stability=entry, stability_seed1=other)
    )
    assert list(methods) == ['clean', 'stability']
    assert methods['stability']['mPC'] == pytest.approx(41.0)
    assert methods['stability']['per_corruption'] == {
        'gaussian_noise': {'1': 42.0}
    }
    assert list(seeds) == ['stability']
    assert seeds['stability']['1']['P'] == 52.0


def test_robustness_report_adds_corruption_metrics(tmp_path):
    """The robustness tool's report: P, mPC, rPC, the groups and mCE
    against the reference, on a hand-made level table."""
    results = {
        'clean': _levels(dict(gaussian_noise=[40, 20], frost=[60, 40])),
        'robust': _levels(dict(gaussian_noise=[50, 40], frost=[60, 40])),
    }
    clean = dict(clean=70.0, robust=68.0)
    paths = write_robustness_report(
        results, tmp_path, clean, reference='clean'
    )
    summary = json.loads(Path(paths['json']).read_text())['corruption']
    robust = summary['robust']
    assert robust['P'] == 68.0
    assert robust['mPC'] == pytest.approx(47.5)
    assert robust['rPC'] == pytest.approx(47.5 / 68)
    assert robust['per_group'] == dict(noise=45.0, weather=50.0)
    # CE: noise (50 + 60) / (60 + 80), frost 1
    assert robust['mCE'] == pytest.approx((110 / 140 + 1) / 2)
    assert summary['clean']['mCE'] == pytest.approx(1.0)
    md = Path(paths['md']).read_text()
    assert '| robust | 68.00 | 47.50 | 0.699 | 0.893 | 45.00 | 50.00 |' in md
    with pytest.raises(ValueError, match='reference'):
        write_robustness_report(results, tmp_path, clean, reference='x')


def test_report_of_other_types_has_no_corruption_metrics(tmp_path):
    paths = write_robustness_report(
        {'m': {'jpeg': {'10': 30.0}}}, tmp_path, {'m': 50.0}
    )
    assert 'corruption' not in json.loads(Path(paths['json']).read_text())


def test_cached_frames_equal_the_library_and_are_reused(tmp_path):
    pytest.importorskip('imagecorruptions')
    from mmseg_gearnn.distortions import corrupt

    space = dict(distortions=dict(ic_shot_noise=[1, 2]))
    step = CachedRequestedDistortion(space, str(tmp_path), record_gear=False)
    img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), np.uint8)
    request = dict(type='ic_shot_noise', level=2, seed=7)
    out = step(dict(img=img.copy(), distortion_request=dict(request)))
    expected = corrupt(img, 'shot_noise', 2, seed=7)
    np.testing.assert_array_equal(out['img'], expected)
    assert out['distortion'] == dict(type='ic_shot_noise', level=2, gear=None)
    key = frame_key(img, 'shot_noise', 2, 7)
    path = tmp_path / key[:2] / f'{key}.png'
    assert path.is_file()
    # a second request reads the file: overwrite it to see
    marker = np.zeros_like(expected)
    import cv2

    cv2.imwrite(str(path), marker)
    again = step(dict(img=img.copy(), distortion_request=dict(request)))
    np.testing.assert_array_equal(again['img'], marker)
    # another seed is another frame
    assert frame_key(img, 'shot_noise', 2, 8) != key


@pytest.mark.slow
def test_quick_run_end_to_end(camvid_root, tmp_path):
    pytest.importorskip('imagecorruptions')
    work_dir = tmp_path / 'work'
    cmd = [
        sys.executable,
        str(REPO_ROOT / 'benchmarks/camvid_c.py'),
        str(camvid_root),
        '--quick',
        '--work-dir',
        str(work_dir),
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=1200, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    progress = [
        line for line in proc.stdout.splitlines() if '[camvid-c]' in line
    ]
    assert any(line.startswith('[camvid-c] gearnn:') for line in progress)
    assert any(
        line.startswith('[camvid-c] gearnn_recipe:') for line in progress
    )
    results = json.loads((work_dir / 'camvid_c_quick.json').read_text())
    for key in (
        'command',
        'commit',
        'wall_time_s',
        'split',
        'seeds',
        'per_gear_batches',
        'held_out_mean_no_fallback',
    ):
        assert key in results
    # the recipe: robust base and teacher chosen among all four pairs
    robust = results['recipe_robust_base']
    assert len(robust['candidates']) == 4
    assert (robust['robust'], robust['teacher']) in {
        (r, t) for r in ('mixed_aug', 'stability') for t in ('base', 'clean')
    }
    # the recipe: its clean gear too, routing with its chosen threshold
    assert results['per_gear_batches']['gearnn_recipe']['gears'] == 2 + 1
    routing = results['routing']
    assert 0 <= routing['fallback_share'] <= 1
    assert routing['choice']['threshold'] in [
        float(t) for t in routing['choice']['score']
    ]
    assert set(routing['choice']['folds']) == {'gaussian_noise', 'fog'}
    assert set(routing['routed']) == {'contrast', 'speckle_noise'}
    for goal in results['goals']:
        assert len(goal['interval']) == 2, goal
    assert results['corruptions'] == ['gaussian_noise', 'contrast', 'fog']
    assert results['held_out'] == ['speckle_noise']
    assert list(results['methods']) == list(METHOD_NAMES)
    for name, entry in results['methods'].items():
        assert set(entry) == SCHEMA_KEYS, name
        assert set(entry['per_corruption']) == {
            'gaussian_noise',
            'contrast',
            'fog',
            'speckle_noise',
        }, name
        for cells in entry['per_corruption'].values():
            assert list(cells) == ['1', '5'], name
    assert results['methods']['clean']['mCE'] == pytest.approx(1.0)
    assert results['methods']['gearnn']['memory_ratio'] > 1.0
    assert results['gear_mappings']['per_corruption']['gears'] == 2
    # every frame is corrupted once: 2 val frames under 3 + 1 corruptions
    # and 2 tuning frames under the 2 trained ones, 2 severities each
    frames = list((work_dir / 'frames').rglob('*.png'))
    assert len(frames) == 2 * (3 * 2 + 2) + 2 * (2 * 2)
    for suffix in ('md', 'png'):
        assert (work_dir / f'camvid_c_quick.{suffix}').is_file()


RECIPE_CONFIGS = REPO_ROOT / 'configs' / 'gearnn'
RECIPE_CONFIG = RECIPE_CONFIGS / (
    'gearnn-recipe_deeplabv3plus_efficientnet-lite0_1xb8-300_'
    'camvid-c-240x320.py'
)
ROBUST_CONFIG = (
    RECIPE_CONFIGS
    / 'mixed_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-c-240x320.py'
)
STABILITY_CONFIG = RECIPE_CONFIGS / (
    'stability_deeplabv3plus_efficientnet-lite0_1xb8-300_camvid-c-240x320.py'
)


def test_recipe_configs_hold_the_benchmark_spaces():
    """The shipped CamVid-C recipe: the robust base trains on the
    benchmark's trained corruptions, the gears on the same and the clean
    gear's identity level; both test every benchmark and held-out level."""
    from mmengine.config import Config

    full = PROFILES['full']
    robust = Config.fromfile(str(ROBUST_CONFIG))
    recipe = Config.fromfile(str(RECIPE_CONFIG))
    steps = {s['type']: s for s in robust.train_dataloader.dataset.pipeline}
    assert steps['RandomDistortion']['space'] == full.train_space()
    stability = Config.fromfile(str(STABILITY_CONFIG))
    assert stability.model.type == 'StabilitySegmentor'
    assert stability.model.alpha == full.alpha
    steps = {s['type']: s for s in stability.train_dataloader.dataset.pipeline}
    assert steps['PairedDistortion']['space'] == full.train_space()
    steps = {s['type']: s for s in recipe.train_dataloader.dataset.pipeline}
    assert list(steps)[-3:] == [
        'KeepCleanCopy',
        'RandomDistortion',
        'PackSegInputs',
    ]
    assert steps['RandomDistortion']['space'] == full.train_space(True)
    gears = full.gear_space('per_corruption', clean_gear=True)
    assert recipe.model.space == gears
    assert recipe.distortion_space == gears
    router = recipe.model.router
    assert router.type == 'ConfidentGearRouter'
    assert build_space(gears).level_of(router.clean_gear) == (
        'brightness',
        1.0,
    )
    for cfg in (robust, stability, recipe):
        assert cfg.test_dataloader.dataset.space == full.eval_space('all')
        assert cfg.test_evaluator.space == full.eval_space('all')


def test_recipe_config_trains_a_step_on_a_toy(camvid_root, tmp_path):
    """The recipe config with a tiny segmentor on CamVid crops: one
    training step distils, moves the gears only, and clean frames run on
    the clean gear."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from toys import tiny_segmentor

    from mmseg_gearnn.utils import set_crop_size, set_data_root

    cfg = Config.fromfile(str(RECIPE_CONFIG))
    set_data_root(cfg, str(camvid_root))
    set_crop_size(cfg, (64, 80))
    tiny = tiny_segmentor((64, 80), num_classes=11)
    cfg.model.segmentor = tiny
    cfg.model.data_preprocessor = tiny['data_preprocessor']
    cfg.model.adaptor = 'bn'
    # the teacher of the recipe's step 2: a clean model of the same kind
    from mmseg.registry import MODELS

    init_default_scope('mmseg')
    teacher = MODELS.build(copy.deepcopy(tiny))
    cfg.model.teacher_checkpoint = str(tmp_path / 'clean.pth')
    torch.save(
        dict(state_dict=teacher.state_dict()), str(tmp_path / 'clean.pth')
    )
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.custom_hooks = []
    init_default_scope('mmseg')
    runner = Runner.from_cfg(cfg)
    model = runner.model
    before = {
        g: {k: v.clone() for k, v in model.gear_bank.tensors(g).items()}
        for g in range(1, model.gear_bank.num_gears)
    }
    base = {k: v.clone() for k, v in model.segmentor.state_dict().items()}
    batch = next(iter(runner.train_dataloader))
    optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    losses = model.train_step(batch, optim_wrapper)
    assert torch.isfinite(losses['loss_distill'])
    taught = model.teacher().state_dict()  # the clean model's, read
    assert all(
        torch.equal(v, taught[k]) for k, v in teacher.state_dict().items()
    )
    moved = [
        g
        for g, tensors in before.items()
        if any(
            not torch.equal(t, model.gear_bank.tensors(g)[k])
            for k, t in tensors.items()
        )
    ]
    assert moved, 'no gear moved'
    model.gear_bank.restore()
    after = model.segmentor.state_dict()
    assert all(torch.equal(base[k], after[k]) for k in base), 'base moved'
    # clean metadata routes to the clean gear
    from mmseg.structures import SegDataSample

    sample = SegDataSample(metainfo=dict(distortion=dict(type='clean')))
    assert model.router.metadata_route(sample) == 0
    decided = model.router.decide(torch.zeros(1, 3, 64, 80), [sample], None)
    assert decided == [(cfg.model.router.clean_gear, 'metadata')]


def test_every_trained_method_runs_each_seed(camvid_root, tmp_path):
    """With seeds 0-2, every method that trains (the single models, the
    recipe, the paper's gears and per-corruption BN) has a runner per
    seed; the label-free ones (TENT, online BN) and the clean model one."""
    from gearnn_bench.corruption_profile import resolve_corruption_profile
    from gearnn_bench.corruption_stages import CorruptionStages

    _, profile = resolve_corruption_profile('quick', seeds=(0, 1, 2))
    stages = CorruptionStages(str(camvid_root), str(tmp_path), profile)
    names = set(stages.runners('base.pth'))
    for method in ('mixed_aug', 'stability', 'gearnn_recipe', 'gearnn'):
        assert {f'{method}_seed1', f'{method}_seed2'} <= names, method
    assert {'bn_stats_seed1', 'bn_stats_seed2'} <= names
    assert not any(
        n.startswith(('tent_', 'online_bn_', 'clean_')) for n in names
    )
