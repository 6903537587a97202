"""The CamVid robustness benchmark: its pieces on synthetic inputs, and the
``--quick`` command end to end on a CamVid-layout folder of real frames."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from mmseg_gearnn.apis import benchmark
from mmseg_gearnn.apis.benchmark import (
    REQUIRED_METHODS,
    CamVidBenchmark,
    StageCache,
    check_results_schema,
    evaluate_goals,
    resolve_profile,
    results_markdown,
    set_schedule,
)

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
        stability_alpha={'0.3': 30.0},
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
    assert '| gearnn - clean (mIoU points) | 20 | >= 18 | yes | 0 |' in text
    assert '| 0.19 | <= 0.2 | yes | 0 |' in text


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
        'full', curve_budgets=(0.002, 0.01), alphas=None
    )
    assert name == 'full with curve_budgets=(0.002, 0.01)'
    assert profile.curve_budgets == (0.002, 0.01)
    assert profile.alphas == resolve_profile('full')[1].alphas
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
    assert set(full.alphas) < set(extended.alphas)
    assert extended.gears_on_mixed_aug and not full.gears_on_mixed_aug
    for field in ('iters', 'budget', 'selection_steps', 'bn_batches_per_gear'):
        assert getattr(full, field) == getattr(extended, field)


def _empty_camvid_layout(root):
    for sub in ('train', 'trainannot', 'val', 'valannot'):
        (root / sub).mkdir()


def _configs(base=BASE_CONFIG, gearnn=BASE_CONFIG):
    return dict(
        base=str(base),
        gearnn=str(gearnn),
        mixed=str(BASE_CONFIG),
        stability=str(BASE_CONFIG),
    )


def test_bad_folder_and_profile_are_named(tmp_path):
    configs = _configs()
    (tmp_path / 'train').mkdir()
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

    monkeypatch.setattr(benchmark, 'train', fake_train)

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

    monkeypatch.setattr(benchmark, 'train', record)
    base = str(tmp_path / 'base.pth')
    with pytest.raises(InterruptedError):
        bench.full_finetune(base)
    with pytest.raises(InterruptedError):
        bench.gears('bn_stats', base, 'bn')
    full, bn = trained['full_finetune'], trained['bn_stats']
    assert full.model.adaptor == 'all' and bn.model.adaptor == 'bn'
    assert full.load_from == base
    rate = bench.profile.full_finetune_lr
    assert full.optim_wrapper.optimizer.lr == rate
    gear_rate = Config.fromfile(str(GEARNN_CONFIG)).optim_wrapper.optimizer.lr
    assert bn.optim_wrapper.optimizer.lr == gear_rate != rate


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
                    camvid_root / src_sub / name, dst / sub / f'f{i:02d}.png'
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
    assert methods['full_finetune']['adaptor_fraction'] == pytest.approx(1.0)
    assert methods['full_finetune']['memory_ratio'] == pytest.approx(
        1.0 + num_levels
    )
    assert 0 < methods['gearnn']['adaptor_fraction'] <= 0.002
    # the clean gear is the base itself
    assert methods['gearnn']['clean_miou'] == methods['clean']['clean_miou']
    assert (
        methods['gearnn_on_mixed_aug']['clean_miou']
        == methods['mixed_aug']['clean_miou']
    )
    assert set(results['budget_curve']) >= {'fisher', 'random'}
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
    assert stages['base']['time_s'] > 0 and 'mixed_aug' in stages
    assert (work_dir / 'camvid_quick.md').read_text().startswith('# ')
    assert (work_dir / 'camvid_quick.png').stat().st_size > 0

    # A second run reuses every stage: nothing is trained again.
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert ': running' not in proc.stdout + proc.stderr
    again = json.loads((work_dir / 'camvid_quick.json').read_text())
    assert again['methods'] == results['methods']
    assert again['stages'] == {
        n: dict(st, reused=True) for n, st in stages.items()
    }
