"""The CamVid robustness benchmark (``benchmarks/gearnn_bench``): its pieces
on synthetic inputs, and the ``--quick`` command end to end on a
CamVid-layout folder of real frames."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from gearnn_bench import stages
from gearnn_bench.cache import StageCache
from gearnn_bench.comparison import CamVidBenchmark, seed_summary
from gearnn_bench.goals import GOALS, Goal, evaluate_goals
from gearnn_bench.methods import (
    CONFIG_PATHS,
    METHODS,
    RECIPE,
    REQUIRED_METHODS,
    Method,
    check_methods,
    method_named,
    with_bases,
)
from gearnn_bench.profiles import resolve_profile
from gearnn_bench.report import check_results_schema, results_markdown
from gearnn_bench.stage_config import set_schedule
from gearnn_bench.tuning import grid_points, point_label, split_files

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_CONFIG = (
    REPO_ROOT
    / 'configs/gearnn/deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-'
    '240x320.py'
)
GEARNN_CONFIG = (
    REPO_ROOT
    / 'configs/gearnn/gearnn_deeplabv3plus_efficientnet-lite0_1xb8-300_'
    'camvid-240x320.py'
)
TEN_LEVELS = REPO_ROOT / 'configs/_base_/distortions/camvid_10_levels.py'


def _entry(mean, clean=50.0, fraction=0.0, gears=1):
    return dict(
        mean_miou=mean,
        clean_miou=clean,
        memory_ratio=1.0 + (gears - 1) * fraction,
        adaptor_fraction=fraction,
        levels={'jpeg': {'10': mean + 1, '5': mean - 1}},
    )


def _results(**means):
    methods = {name: _entry(30.0) for name in REQUIRED_METHODS}
    for name, mean in means.items():
        methods[name] = _entry(mean)
    methods['gearnn']['adaptor_fraction'] = 0.0019
    return dict(
        command='python benchmarks/camvid.py DIR',
        commit='abc',
        machine='test',
        wall_time_s=1.0,
        split='val',
        data_root='DIR',
        profile='quick',
        base_checkpoint='base.pth',
        tuning=None,
        candidates={},
        methods=methods,
        budget_curve={
            'fisher': {'0.002': dict(mean_miou=31.0)},
            'random': {'0.01': dict(mean_miou=29.0)},
        },
    )


def test_set_schedule_shortens_every_part():
    cfg = Config.fromfile(BASE_CONFIG)
    set_schedule(cfg, 100)
    assert cfg.train_cfg.max_iters == 100
    assert cfg.train_cfg.val_interval == 100
    assert cfg.default_hooks.checkpoint.interval == 100
    # the 30-iteration warm-up stays, the poly decay now ends at 100
    assert [(s.type, s.begin, s.end) for s in cfg.param_scheduler] == [
        ('LinearLR', 0, 30),
        ('PolyLR', 30, 100),
    ]
    set_schedule(cfg, 10)
    # a warm-up longer than the run is dropped, not cut into a broken one
    assert [(s.type, s.begin, s.end) for s in cfg.param_scheduler] == []
    with pytest.raises(ValueError, match='iters'):
        set_schedule(cfg, 0)


def test_goals_report_margins():
    results = _results(gearnn=50.0, clean=30.0, stability=46.0)
    results['methods']['full_finetune']['mean_miou'] = 50.5
    goals = {g['goal'].split(' (')[0]: g for g in evaluate_goals(results)}
    over_clean = goals['gearnn - clean']
    assert over_clean['value'] == pytest.approx(20.0)
    assert over_clean['met'] and over_clean['short_by'] == 0
    over_stability = goals['gearnn - stability']
    assert not over_stability['met']
    assert over_stability['short_by'] == pytest.approx(0.8)
    assert goals['gearnn - full_finetune']['met']  # 0.5 below, within 1
    adaptor = goals['gearnn adaptor_fraction']
    assert adaptor['met'] and adaptor['compare'] == '<='
    assert adaptor['value'] == pytest.approx(0.19)  # percent of the model
    # GearNN's clean gear must equal the clean model on clean frames
    assert goals['|gearnn clean - clean model clean|']['met']
    results['methods']['gearnn']['clean_miou'] = 49.0
    results['methods']['gearnn']['adaptor_fraction'] = 0.0025
    results['methods']['bn_stats']['mean_miou'] = 50.0  # a tie is not above
    goals = {g['goal'].split(' (')[0]: g for g in evaluate_goals(results)}
    assert goals['|gearnn clean - clean model clean|']['short_by'] == 1.0
    assert not goals['gearnn adaptor_fraction']['met']
    assert goals['gearnn adaptor_fraction']['short_by'] == pytest.approx(0.05)
    assert not goals['gearnn - bn_stats']['met']


def test_goals_are_named_as_in_the_results_files():
    results = _results(gearnn=50.0)
    results['methods']['gearnn_on_mixed_aug'] = _entry(40.0)
    results['methods']['gearnn_recipe'] = _entry(40.0, fraction=0.002)
    # the wall-time goal is the whole full profile's, from nothing
    assert 'wall time' not in evaluate_goals(results)[-1]['goal']
    results['profile'] = 'full'
    assert [g['goal'] for g in evaluate_goals(results)] == [
        'gearnn - clean (mIoU points)',
        'gearnn - stability (mIoU points)',
        'gearnn - mixed_aug (mIoU points)',
        'gearnn - full_finetune (mIoU points, within 1 below)',
        'gearnn - bn_stats (mIoU points, above)',
        'gearnn - random_selection (mIoU points, above)',
        'gearnn adaptor_fraction (percent of the model per gear)',
        '|gearnn clean - clean model clean| (mIoU points, equal)',
        'gearnn_recipe - stability (mIoU points)',
        'gearnn_recipe - mixed_aug (mIoU points)',
        'gearnn_recipe - bn_stats (mIoU points)',
        'gearnn_recipe - tent (mIoU points)',
        'gearnn_recipe - online_bn (mIoU points)',
        'gearnn_recipe adaptor_fraction (percent of the model per gear)',
        'gearnn_recipe clean - clean model clean (mIoU points, within 1 '
        'below)',
        'gearnn_on_mixed_aug - clean (mIoU points)',
        'gearnn_on_mixed_aug - stability (mIoU points)',
        'gearnn_on_mixed_aug - mixed_aug (mIoU points)',
        'wall time of the run (minutes, full profile from nothing)',
    ]
    on_mixed = evaluate_goals(results)[-4]
    assert on_mixed['value'] == pytest.approx(10.0)
    assert not on_mixed['met'] and on_mixed['short_by'] == pytest.approx(8.0)


def test_goals_of_a_skipped_method_are_left_out():
    results = _results(gearnn=50.0)
    recipe = [g for g in GOALS if g.method == 'gearnn_recipe']
    # less the gears on the mixed model, the recipe and the wall time
    assert len(evaluate_goals(results)) == len(GOALS) - 4 - len(recipe)
    # a partial run lacks the other method: its goals are left out too
    del results['methods']['bn_stats']
    names = [g['goal'] for g in evaluate_goals(results)]
    assert not [n for n in names if 'bn_stats' in n]


def test_goals_without_frame_areas_are_judged_on_the_mean_and_noise_shown():
    results = _results(gearnn=50.0)
    m = results['methods']
    m['gearnn'] = seed_summary([_entry(49.0), _entry(50.0), _entry(51.0)])
    m['gearnn']['adaptor_fraction'] = 0.0019
    m['random_selection'] = seed_summary([_entry(48.6), _entry(48.8)])
    goals = {g['goal'].split(' (')[0]: g for g in evaluate_goals(results)}
    above_random = goals['gearnn - random_selection']
    # judged on the means: 50.0 - 48.7 = 1.3 > 0; the seeds' noise (the
    # larger spread over seeds is 1.0) is given for reading
    assert above_random['value'] == pytest.approx(1.3)
    assert above_random['noise'] == pytest.approx(2.0)
    assert above_random['within_noise'] is True
    # no frame areas: no interval, the value decides
    assert above_random['interval'] is None
    assert above_random['met'] and above_random['met_by_value']
    # one seed each: the noise is unknown
    m['gearnn'] = _entry(50.0, fraction=0.0019)
    m['random_selection'] = _entry(40.0)
    goals = {g['goal'].split(' (')[0]: g for g in evaluate_goals(results)}
    assert goals['gearnn - random_selection']['within_noise'] is None
    # a measure between two methods needs the other
    with pytest.raises(ValueError, match='give other'):
        Goal('clean_margin', 'gearnn', -1.0)


def test_seed_summary_gives_mean_spread_and_each_seed():
    entry = seed_summary([_entry(40.0), _entry(42.0), _entry(44.0)])
    assert entry['mean_miou'] == pytest.approx(42.0)
    assert entry['seeds'] == [40.0, 42.0, 44.0]
    assert entry['mean_miou_std'] == pytest.approx(2.0)  # sample std
    assert entry['levels'] == _entry(40.0)['levels']  # seed 0's levels
    one = seed_summary([_entry(40.0)])
    assert one['seeds'] == [40.0] and one['mean_miou_std'] == 0.0


def test_bad_goals_and_methods_are_named():
    with pytest.raises(ValueError, match='unknown measure'):
        Goal('ratio', 'gearnn', 1.0)
    with pytest.raises(ValueError, match='unknown comparison'):
        Goal('margin', 'gearnn', 1.0, '<', other='clean')
    with pytest.raises(ValueError, match='unknown kind'):
        Method('tent', 'adapt')
    with pytest.raises(ValueError, match='need an adaptor'):
        Method('bn', 'gears')
    with pytest.raises(ValueError, match='train under a gear config'):
        Method('bn', 'gears', config='mixed', adaptor='bn')
    with pytest.raises(ValueError, match="grid option 'a' has no values"):
        Method('g', 'selected_gears', grid={'a': ()})
    with pytest.raises(ValueError, match="another method's model"):
        Method('m', 'fine_tune', config='mixed', base='mixed_aug')
    on_gears = Method('g', 'selected_gears', base='bn_stats')
    with pytest.raises(ValueError, match="base 'bn_stats' must be"):
        check_methods(METHODS + (on_gears,))
    with pytest.raises(ValueError, match="'clean' used twice"):
        check_methods(METHODS + (METHODS[0],))
    with pytest.raises(KeyError, match='no method'):
        method_named('dropout')


def test_required_methods_are_those_every_profile_runs():
    assert REQUIRED_METHODS == (
        'clean',
        'mixed_aug',
        'stability',
        'bn_stats',
        'full_finetune',
        'gearnn',
        'random_selection',
        'online_bn',
        'tent',
        'gearnn_distill',
        'gearnn_shared_steps',
        'gearnn_distill_on_mixed_aug',
    )
    # every method's config is known, and every tuned method gets the same
    # effort: three grid points
    for method in METHODS:
        assert method.config in CONFIG_PATHS
        if method.grid:
            assert len(grid_points(method.grid)) == 3, method.name
    seeded = {m.name for m in METHODS if m.seeded}
    assert seeded >= {
        'mixed_aug',
        'stability',
        'bn_stats',
        'gearnn',
        'random_selection',
    }
    # the shipped recipe is a candidate that runs with every seed
    assert method_named(RECIPE).candidate and method_named(RECIPE).seeded
    assert with_bases(['gearnn_on_mixed_aug'], METHODS) == (
        method_named('mixed_aug'),
        method_named('gearnn_on_mixed_aug'),
    )


def test_markdown_lists_every_method_and_budget():
    results = _results(gearnn=50.0)
    results['goals'] = evaluate_goals(results)
    text = results_markdown(results, 'camvid.png')
    for name in REQUIRED_METHODS:
        assert f'| {name} |' in text
    assert '| selection | 0.20% | 1.00% |' in text
    assert '| fisher | 31.00 | - |' in text
    assert '| random | - | 29.00 |' in text
    assert 'python benchmarks/camvid.py DIR' in text
    assert (
        '| gearnn - clean (mIoU points) | 20 | - | >= 18 | yes | 0 '
        '| one seed |' in text
    )
    assert '| 0.19 | - | <= 0.2 | yes | 0 |' in text


def test_schema_check_names_what_is_missing():
    results = _results()
    check_results_schema(results)
    del results['methods']['random_selection']
    with pytest.raises(ValueError, match='random_selection'):
        check_results_schema(results)
    results = _results()
    results['methods']['gearnn']['memory_ratio'] = None
    with pytest.raises(ValueError, match='gearnn.memory_ratio'):
        check_results_schema(results)


def test_stage_cache_reuses_and_reruns_on_new_inputs(tmp_path):
    cache = StageCache(str(tmp_path))
    calls = []

    def stage(stage_dir):
        calls.append(stage_dir)
        return dict(value=len(calls))

    inputs = dict(budget=0.002, budgets=(0.001, 0.01))
    assert cache.run('s', inputs, stage)['value'] == 1
    assert cache.run('s', inputs, stage)['value'] == 1  # cached
    assert len(calls) == 1
    assert cache.run('s', dict(inputs, budget=0.01), stage)['value'] == 2
    # Asked for again in the same run: still a stage this run ran.
    cache.run('s', dict(inputs, budget=0.01), stage)
    assert cache.stages['s']['reused'] is False
    cache = StageCache(str(tmp_path))  # the next run
    result = cache.run('s', dict(inputs, budget=0.01), stage)
    assert cache.stages['s'] == dict(time_s=result['time_s'], reused=True)


def test_markdown_names_reused_stages_and_sums_their_times():
    results = _results()
    results['goals'] = evaluate_goals(results)
    results['stages'] = dict(
        base=dict(time_s=None, reused=True),
        clean=dict(time_s=60.0, reused=True),
        gears=dict(time_s=120.0, reused=False),
    )
    text = results_markdown(results)
    assert '- stages reused from earlier runs: `base`, `clean`' in text
    assert (
        "- every stage's own time summed: 3.0 min (without base: given or "
        'reused)' in text
    )
    results['stages']['base'] = dict(time_s=600.0, reused=False)
    text = results_markdown(results)
    assert 'own time summed: 13.0 min\n' in text


def test_profile_overrides_are_named():
    name, profile = resolve_profile(
        'full', curve_budgets=(0.002, 0.01), seeds=None
    )
    assert name == 'full with curve_budgets=(0.002, 0.01)'
    assert profile.curve_budgets == (0.002, 0.01)
    assert profile.seeds == resolve_profile('full')[1].seeds == (0, 1, 2)
    assert profile.tune
    with pytest.raises(ValueError, match='unknown profile'):
        resolve_profile('huge')
    with pytest.raises(TypeError, match='BenchmarkProfile'):
        resolve_profile(3)


def test_extended_profile_adds_stages_to_full():
    full = resolve_profile('full')[1]
    extended = resolve_profile('extended')[1]
    # The extended run reuses every stage of the full one: shared settings
    # equal, scorings and budgets a superset.
    assert full.scorings == ('fisher',)
    assert set(extended.scorings) == {'fisher', 'rgn', 'weight_change'}
    assert extended.scorings[0] == full.scorings[0]
    assert set(full.curve_budgets) < set(extended.curve_budgets)
    # The curve covers every scoring method and random selection.
    assert set(extended.curve_scorings) == set(extended.scorings) | {'random'}
    assert extended.gears_on_fine_tuned and full.gears_on_fine_tuned
    for field in (
        'iters',
        'budget',
        'selection_steps',
        'bn_batches_per_gear',
        'tune',
        'seeds',
    ):
        assert getattr(full, field) == getattr(extended, field)


def _empty_camvid_layout(root):
    for sub in ('train', 'trainannot', 'val', 'valannot'):
        (root / sub).mkdir()
    # one sequence of six (empty) frames: five fit, one tunes
    for i in range(6):
        (root / 'train' / f'seq_{i:04d}.png').touch()


def _configs(base=BASE_CONFIG, gearnn=BASE_CONFIG):
    configs = {k: str(BASE_CONFIG) for k in CONFIG_PATHS}
    return dict(configs, base=str(base), gearnn=str(gearnn))


def test_bad_folder_and_profile_are_named(tmp_path):
    configs = _configs()
    (tmp_path / 'train').mkdir()
    (tmp_path / 'train' / 'a_0.png').touch()
    with pytest.raises(FileNotFoundError, match='trainannot'):
        CamVidBenchmark(str(tmp_path), str(tmp_path / 'w'), configs)
    for sub in ('trainannot', 'val', 'valannot'):
        (tmp_path / sub).mkdir()
    with pytest.raises(ValueError, match='unknown profile'):
        CamVidBenchmark(
            str(tmp_path), str(tmp_path / 'w'), configs, profile='huge'
        )
    with pytest.raises(FileNotFoundError, match='base checkpoint'):
        CamVidBenchmark(
            str(tmp_path),
            str(tmp_path / 'w'),
            configs,
            base_checkpoint=str(tmp_path / 'none.pth'),
        )
    # one frame per sequence leaves nothing to tune
    with pytest.raises(ValueError, match='leave 1 to fit and 0 to tune'):
        CamVidBenchmark(str(tmp_path), str(tmp_path / 'w'), configs)


def test_stage_inputs_follow_config_edits(tmp_path):
    _empty_camvid_layout(tmp_path)
    config = tmp_path / 'my_config.py'
    config.write_text(f'_base_ = [{str(BASE_CONFIG)!r}]\n')
    configs = _configs(base=config)
    bench = CamVidBenchmark(str(tmp_path), str(tmp_path / 'w'), configs)
    digest = bench._config_digest('base')
    assert digest == bench._config_digest('base')  # stable across loads
    # The same content through inheritance or directly.
    assert digest == bench._config_digest('gearnn')
    options = {'model.decode_head.dropout_ratio': 0.3}
    assert bench._config_digest('base', options) != digest
    config.write_text(
        f'_base_ = [{str(BASE_CONFIG)!r}]\n'
        'optim_wrapper = dict(optimizer=dict(lr=0.5))\n'
    )
    assert bench._config_digest('base') != digest


def test_full_resolution_profile_reaches_every_stage(tmp_path):
    _empty_camvid_layout(tmp_path)
    ten = Config.fromfile(str(TEN_LEVELS)).distortion_space.to_dict()
    name, profile = resolve_profile(
        'full', crop_size=(360, 480), distortion_space=ten
    )
    assert name == (
        'full with crop_size=(360, 480), distortion_space={brightness: 10 '
        'levels, jpeg: 10 levels, resolution: 10 levels, gaussian_noise: 10 '
        'levels}'
    )
    configs = _configs(gearnn=GEARNN_CONFIG)
    default = CamVidBenchmark(str(tmp_path), str(tmp_path / 'a'), configs)
    full_res = CamVidBenchmark(
        str(tmp_path), str(tmp_path / 'b'), configs, profile=profile
    )
    # Stages of one resolution are never reused for the other.
    for key in ('base', 'gearnn'):
        assert full_res._config_digest(key) != default._config_digest(key)
    cfg = full_res._cfg('gearnn', str(tmp_path / 'stage'), 5)
    assert tuple(cfg.crop_size) == (360, 480)
    assert tuple(cfg.model.data_preprocessor['size']) == (360, 480)
    assert cfg.model.space['distortions'] == ten['distortions']
    sweep = cfg.test_dataloader.dataset
    assert sweep.space['distortions'] == ten['distortions']
    assert tuple(sweep.dataset.pipeline[1]['scale']) == (480, 360)
    assert cfg.train_cfg.max_iters == 5


def test_base_is_reused_only_for_its_own_inputs(tmp_path, monkeypatch):
    _empty_camvid_layout(tmp_path)
    config = tmp_path / 'my_config.py'
    config.write_text(f'_base_ = [{str(BASE_CONFIG)!r}]\n')
    trained = []

    def fake_train(cfg, stage_dir, reuse=True):
        final = Path(stage_dir) / f'iter_{cfg.train_cfg.max_iters}.pth'
        if not final.exists():
            trained.append(stage_dir)
            final.write_bytes(b'weights')
        return str(final)

    monkeypatch.setattr(stages, 'train', fake_train)

    def bench():
        return CamVidBenchmark(
            str(tmp_path), str(tmp_path / 'w'), _configs(base=config)
        )

    first = bench().train_base()
    assert len(trained) == 1
    assert bench().train_base() == first and len(trained) == 1
    config.write_text(
        f'_base_ = [{str(BASE_CONFIG)!r}]\n'
        'optim_wrapper = dict(optimizer=dict(lr=0.5))\n'
    )
    with pytest.raises(RuntimeError, match=r'other inputs \(changed: config'):
        bench().train_base()
    assert Path(first).read_bytes() == b'weights'  # nothing deleted
    assert len(trained) == 1
    # A base without a record cannot be checked: an error, not reused.
    (tmp_path / 'w' / 'base' / 'inputs.json').unlink()
    with pytest.raises(RuntimeError, match='no record of its inputs'):
        bench().train_base()


def test_full_finetune_trains_at_its_own_rate(tmp_path, monkeypatch):
    _empty_camvid_layout(tmp_path)
    bench = CamVidBenchmark(
        str(tmp_path), str(tmp_path / 'work'), _configs(gearnn=GEARNN_CONFIG)
    )
    trained = {}

    def record(cfg, stage_dir, reuse=True):
        trained[os.path.basename(stage_dir)] = cfg
        raise InterruptedError  # the config is all this test needs

    monkeypatch.setattr(stages, 'train', record)
    base = str(tmp_path / 'base.pth')
    for name in ('full_finetune', 'bn_stats'):
        with pytest.raises(InterruptedError):
            bench.run_method(method_named(name), dict(base=base))
    # the first point of each grid trains first, on the fitting frames
    full = trained['full_finetune_lr0.002@tune']
    bn = trained['bn_stats_lr0.06@tune']
    assert full.model.adaptor == 'all' and bn.model.adaptor == 'bn'
    assert full.load_from == base
    assert full.optim_wrapper.optimizer.lr == 2e-3
    assert bn.optim_wrapper.optimizer.lr == 0.06
    fit = full.train_dataloader.dataset.ann_file
    assert Path(fit).read_text().split() == [f'seq_{i:04d}' for i in range(5)]
    # without tuning, full fine-tuning keeps its own rate, not the gears'
    _, untuned = resolve_profile('full', tune=False)
    bench = CamVidBenchmark(
        str(tmp_path),
        str(tmp_path / 'untuned'),
        _configs(gearnn=GEARNN_CONFIG),
        profile=untuned,
    )
    with pytest.raises(InterruptedError):
        bench.run_method(method_named('full_finetune'), dict(base=base))
    rate = trained['full_finetune'].optim_wrapper.optimizer.lr
    assert rate == untuned.full_finetune_lr
    gear_rate = Config.fromfile(str(GEARNN_CONFIG)).optim_wrapper.optimizer.lr
    assert rate != gear_rate


def _fake_stages(monkeypatch, trained, evaluated=None):
    """Training records its config and writes a checkpoint; evaluation
    scores a model by its stability weight (higher is better), 1 point
    less on the tuning split, plus its seed, so no model is built."""

    def fake_train(cfg, stage_dir, reuse=True):
        trained[os.path.basename(stage_dir)] = cfg
        ckpt = Path(stage_dir) / f'iter_{cfg.train_cfg.max_iters}.pth'
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_bytes(os.path.basename(stage_dir).encode())
        return str(ckpt)

    def fake_evaluate(
        self, key, checkpoint, stage_dir, options=None, split='val'
    ):
        options = options or {}
        if evaluated is not None:
            evaluated.append((os.path.basename(stage_dir), split, checkpoint))
        return _entry(
            30.0
            + options.get('model.alpha', 0.0)
            + options.get('model.distill_weight', 0.0)
            + options.get('randomness.seed', 0)
            - (split == 'tune')
        )

    monkeypatch.setattr(stages, 'train', fake_train)
    monkeypatch.setattr(stages.BenchmarkStages, 'evaluate', fake_evaluate)


def test_knobs_are_tuned_on_the_tuning_split_and_seeds_rerun_the_choice(
    tmp_path, monkeypatch
):
    _empty_camvid_layout(tmp_path)
    bench = CamVidBenchmark(str(tmp_path), str(tmp_path / 'w'), _configs())
    trained, evaluated = {}, []
    _fake_stages(monkeypatch, trained, evaluated)
    entries = bench.run_method(method_named('stability'), dict(base='b.pth'))
    # every alpha trains once, on the fitting frames, scored on the tuning
    # frames; the best one's model is evaluated on val, not trained again
    assert bench.tuning['stability'] == dict(
        grid={'model.alpha': [1.0, 0.3, 3.0]},
        tune_mean_miou={'alpha1': 30.0, 'alpha0.3': 29.3, 'alpha3': 32.0},
        chosen={'model.alpha': 3.0},
        tune_best=32.0,
    )
    tuned = ['stability_alpha0.3@tune', 'stability_alpha1@tune']
    tuned.append('stability_alpha3@tune')
    seeds = ['stability_alpha3_seed1', 'stability_alpha3_seed2']
    assert sorted(trained) == tuned + seeds
    for cfg in trained.values():
        assert (
            cfg.train_dataloader.dataset.ann_file == bench.splits['fit_file']
        )
    assert trained['stability_alpha3@tune'].model.alpha == 3.0
    assert trained['stability_alpha3_seed2'].randomness.seed == 2
    val_of_best = [
        e for e in evaluated if e[0:2] == ('stability_alpha3', 'val')
    ]
    assert val_of_best and val_of_best[0][2].endswith(
        'stability_alpha3@tune/iter_100.pth'
    )
    assert [e[1] for e in evaluated].count('tune') == 3
    # val: the mean over the three seeds and each seed's mean
    entry = entries['stability']
    assert entry['seeds'] == [33.0, 34.0, 35.0]
    assert entry['mean_miou'] == pytest.approx(34.0)
    assert entry['mean_miou_std'] == pytest.approx(1.0)
    assert entry['chosen'] == {'model.alpha': 3.0}
    # the tuning-split config reads the tuning frames from train
    cfg = bench._cfg('base', str(tmp_path / 's'), None, split='tune')
    tune_set = cfg.test_dataloader.dataset.dataset
    assert tune_set.data_prefix == dict(
        img_path='train', seg_map_path='trainannot'
    )
    assert Path(tune_set.ann_file).read_text().split() == ['seq_0005']
    val_set = bench._cfg('base', str(tmp_path / 's'), None).test_dataloader
    assert val_set.dataset.dataset.data_prefix['img_path'] == 'val'


def test_a_transform_option_reaches_the_training_pipeline(
    tmp_path, monkeypatch
):
    _empty_camvid_layout(tmp_path)
    configs = dict(_configs(), mixed=CONFIG_PATHS['mixed'])
    bench = CamVidBenchmark(str(tmp_path), str(tmp_path / 'w'), configs)
    trained = {}
    _fake_stages(monkeypatch, trained)
    bench.run_method(method_named('mixed_aug'), dict(base='b.pth'))
    for value in (1 / 21, 0.25, 0.5):
        cfg = trained[f'mixed_aug_clean_prob{value:g}@tune']
        steps = cfg.train_dataloader.dataset.pipeline
        (step,) = [t for t in steps if t['type'] == 'RandomDistortion']
        assert step['clean_prob'] == value
    with pytest.raises(ValueError, match='has no PairedDistortion'):
        bench._cfg(
            'mixed', str(tmp_path), 1, {'PairedDistortion.clean_prob': 0.5}
        )


def test_tuning_split_is_whole_tail_blocks_of_each_sequence(tmp_path):
    names = [f'A_{i:03d}' for i in range(12)] + [
        f'B_{i:03d}' for i in range(7)
    ]
    (tmp_path / 'train').mkdir()
    for name in names:
        (tmp_path / 'train' / f'{name}.png').touch()
    split = split_files(str(tmp_path), str(tmp_path / 'out'))
    tune = Path(split['tune_file']).read_text().split()
    fit = Path(split['fit_file']).read_text().split()
    assert tune == ['A_010', 'A_011', 'B_006']
    assert fit == [n for n in names if n not in tune]
    assert split['tune_frames_per_sequence'] == {'A': 2, 'B': 1}
    assert point_label({'model.alpha': 3.0, 'model.momentum': None}) == (
        '_alpha3_momentumNone'
    )


def test_the_committed_camvid_split_is_the_rule_applied(camvid_root, tmp_path):
    split = split_files(str(camvid_root), str(tmp_path))
    committed = REPO_ROOT / 'configs/_base_/datasets/camvid_splits'
    assert split['tune_file'] == str(committed / 'train_tune.txt')
    assert split['fit_file'] == str(committed / 'train_fit.txt')
    assert split['tune_frames_per_sequence'] == {
        '0001TP': 10,
        '0006R0': 17,
        '0016E5': 34,
    }
    assert (split['fit_frames'], split['tune_frames']) == (306, 61)


def test_a_new_baseline_is_one_entry(tmp_path, monkeypatch):
    _empty_camvid_layout(tmp_path)
    dropout = Method(
        'mixed_dropout',
        'fine_tune',
        config='mixed',
        options={'model.decode_head.dropout_ratio': 0.3},
    )
    bench = CamVidBenchmark(
        str(tmp_path),
        str(tmp_path / 'w'),
        _configs(),
        methods=METHODS + (dropout,),
    )
    trained = {}
    _fake_stages(monkeypatch, trained)
    checkpoints = dict(base='b.pth')
    entries = bench.run_method(dropout, checkpoints)
    assert list(entries) == ['mixed_dropout']
    cfg = trained['mixed_dropout']
    assert cfg.model.decode_head.dropout_ratio == 0.3
    assert cfg.load_from == 'b.pth'
    assert cfg.train_cfg.max_iters == bench.profile.iters
    # A later method may start from it.
    assert checkpoints['mixed_dropout'] == str(
        tmp_path / 'w' / 'mixed_dropout' / 'iter_100.pth'
    )
    with pytest.raises(ValueError, match=r"configs lacks \['other'\]"):
        CamVidBenchmark(
            str(tmp_path),
            str(tmp_path / 'w'),
            _configs(),
            methods=(Method('tent', 'fine_tune', config='other'),),
        )


def _renamed_camvid(camvid_root: Path, dst: Path) -> Path:
    """A CamVid-layout folder of symbolic links with new names: a few
    training frames, and val frames the benchmark's val never had."""
    train = sorted(os.listdir(camvid_root / 'train'))
    val = sorted(os.listdir(camvid_root / 'val'))
    picks = dict(train=(train[:8], 'train'), val=(val[-3:], 'val'))
    for split, (names, src) in picks.items():
        for sub, src_sub in ((split, src), (f'{split}annot', f'{src}annot')):
            (dst / sub).mkdir(parents=True)
            for i, name in enumerate(names):
                os.symlink(
                    camvid_root / src_sub / name,
                    dst / sub / f'seq_{i:02d}.png',
                )
    return dst


@pytest.mark.slow
def test_quick_benchmark_end_to_end(camvid_root, tmp_path):
    data = _renamed_camvid(camvid_root, tmp_path / 'other_camvid')
    work_dir = tmp_path / 'work'
    cmd = [
        sys.executable,
        str(REPO_ROOT / 'benchmarks/camvid.py'),
        str(data),
        '--quick',
        '--work-dir',
        str(work_dir),
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=1200, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((work_dir / 'camvid_quick.json').read_text())
    check_results_schema(results)
    assert results['split'] == 'val'
    assert results['data_root'] == str(data)
    methods = results['methods']
    space = Config.fromfile(BASE_CONFIG).distortion_space.distortions
    for name, entry in methods.items():
        assert list(entry['levels']) == list(space), name
        for dtype, levels in space.items():
            assert list(entry['levels'][dtype]) == [str(v) for v in levels]
    # one model for all levels vs one gear per distortion level
    num_levels = sum(len(v) for v in space.values())
    for name in ('clean', 'mixed_aug', 'stability'):
        assert methods[name]['memory_ratio'] == 1.0
    # every tensor the prediction uses: all but the auxiliary head's
    full = methods['full_finetune']['adaptor_fraction']
    assert 0.98 < full < 1.0
    assert methods['full_finetune']['memory_ratio'] == pytest.approx(
        1.0 + num_levels * full
    )
    assert 0 < methods['gearnn']['adaptor_fraction'] <= 0.002
    # the clean gear is the base itself
    assert methods['gearnn']['clean_miou'] == methods['clean']['clean_miou']
    for base in ('mixed_aug', 'stability'):
        assert (
            methods[f'gearnn_on_{base}']['clean_miou']
            == methods[base]['clean_miou']
        )
    assert set(results['budget_curve']) >= {'fisher', 'random'}
    # tuned on the tuning split (one frame of the eight), seeds as profiled
    tuning = results['tuning']
    assert tuning['split']['tune_frames'] == 1
    assert set(tuning['methods']) == {m.name for m in METHODS if m.grid}
    assert set(results['candidates']['table']) == {
        'gearnn',
        'gearnn_distill',
        'gearnn_shared_steps',
        'gearnn_on_mixed_aug',
        'gearnn_distill_on_mixed_aug',
        'gearnn_on_stability',
    }
    for name in ('online_bn', 'tent', 'gearnn_distill'):
        assert methods[name]['eval_s_per_frame'] > 0
    assert methods['mixed_aug']['seeds'] == [methods['mixed_aug']['mean_miou']]
    # Another budget of the curve is selected from the scores already
    # computed, not scored again.
    scored = work_dir / 'selection_fisher_0.002' / 'selection.json'
    reselected = json.loads(
        (work_dir / 'selection_fisher_0.01/selection.json').read_text()
    )
    assert reselected['scores_from']['path'] == str(scored)
    assert [t['score'] for t in reselected['tensors']] == [
        t['score'] for t in json.loads(scored.read_text())['tensors']
    ]
    stages = results['stages']
    assert not [n for n, st in stages.items() if st['reused']]
    assert stages['base']['time_s'] > 0
    tuned = 'mixed_aug_clean_prob0.047619'  # its config's default first
    assert {f'{tuned}@tune', tuned} <= set(stages)
    # Every goal between two methods has its 95% interval over the val
    # frames (two here), and is met only when the interval clears it.
    intervals = results['intervals']
    assert intervals['frames'] == 2 and intervals['level'] == 0.95
    assert intervals['without_frame_areas'] == []
    between = [g for g in results['goals'] if 'interval' in g]
    assert {
        'gearnn_recipe - stability (mIoU points)',
        'gearnn_recipe - mixed_aug (mIoU points)',
        'gearnn_recipe clean - clean model clean (mIoU points, within 1 '
        'below)',
    } <= {g['goal'] for g in between}
    for goal in between:
        low, high = goal['interval']
        assert low <= high, goal
        assert (
            goal['met']
            == {
                '>=': low >= goal['target'] - 1e-9,
                '>': low > goal['target'] + 1e-9,
                '<=': high <= goal['target'] + 1e-9,
            }[goal['compare']]
        ), goal
    assert (work_dir / 'clean' / 'eval' / 'frame_areas.npz').is_file()
    markdown = (work_dir / 'camvid_quick.md').read_text()
    assert markdown.startswith('# ') and '| 95% interval |' in markdown
    assert (work_dir / 'camvid_quick.png').stat().st_size > 0

    # A second run reuses every stage: nothing is trained again.
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert ': running' not in proc.stdout + proc.stderr
    again = json.loads((work_dir / 'camvid_quick.json').read_text())
    assert again['methods'] == results['methods']
    assert again['goals'] == results['goals']  # the same draws
    assert again['stages'] == {
        n: dict(st, reused=True) for n, st in stages.items()
    }


def test_tune_only_compares_the_recipe_candidates(tmp_path, monkeypatch):
    _empty_camvid_layout(tmp_path)
    base = tmp_path / 'base.pth'
    base.write_bytes(b'base')
    _, profile = resolve_profile(
        'full',
        tune_only=True,
        tune_points=1,
        methods=('gearnn', 'gearnn_distill'),
    )
    configs = dict(
        _configs(gearnn=GEARNN_CONFIG),
        gearnn_distill=CONFIG_PATHS['gearnn_distill'],
    )
    bench = CamVidBenchmark(
        str(tmp_path),
        str(tmp_path / 'w'),
        configs,
        profile=profile,
        base_checkpoint=str(base),
    )
    trained, evaluated = {}, []
    _fake_stages(monkeypatch, trained, evaluated)

    def fake_select(self, scoring, budget, base, prefix='', *args):
        selection = tmp_path / f'{scoring}.json'
        selection.write_text('{}')
        return dict(file=str(selection), sha256=scoring)

    monkeypatch.setattr(stages.BenchmarkStages, 'select', fake_select)
    results = bench.run()
    # the defaults of each candidate, trained on fit and scored on tune only
    assert sorted(trained) == [
        'gearnn_distill_distill_weight1@tune',
        'gearnn_lr0.06@tune',
    ]
    assert {split for _, split, _ in evaluated} == {'tune'}
    assert results['methods'] == {}
    # no goal applies: no method on val, and not the whole full profile
    assert results['goals'] == []
    candidates = results['candidates']
    assert set(candidates['table']) == {'gearnn', 'gearnn_distill'}
    # (the fake evaluation scores distillation one point higher)
    assert candidates['winner'] == 'gearnn_distill'
    assert candidates['shipped'] == RECIPE
    distill = trained['gearnn_distill_distill_weight1@tune']
    assert distill.model.type == 'DistilledGearNNSegmentor'
    steps = distill.train_dataloader.dataset.pipeline
    assert [t['type'] for t in steps][-3:] == [
        'KeepCleanCopy',
        'RandomDistortion',
        'PackSegInputs',
    ]
    text = results_markdown(results)
    assert '| gearnn_distill (best) | 30.00 |' in text
    assert '| gearnn | 29.00 |' in text
    assert '- tuning only: every point scored on the tuning split' in text
    assert '- only these methods ran: `gearnn`, `gearnn_distill`' in text
