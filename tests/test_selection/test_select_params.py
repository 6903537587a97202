"""``tools/select_params.py`` and the config-driven library entry point on a
tiny config and checkpoint made in ``tmp_path``."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from mmseg_gearnn.models.adaptor_tensors import adaptor_size_text
from mmseg_gearnn.selection import (
    DataloaderBatchSource,
    list_candidates,
    load_selection,
    parse_levels,
    run_selection_from_config,
)

SPACE = dict(distortions=dict(brightness=[0.5, 0.2], jpeg=[10]))
NUM_CLASSES = 8  # ProceduralStreetDataset's classes


@pytest.fixture
def tiny_setup(tmp_path, repo_root, tiny_model_cfg, make_trained_like):
    model_cfg = tiny_model_cfg
    model_cfg['data_preprocessor']['size'] = (32, 48)
    model_cfg['decode_head']['num_classes'] = NUM_CLASSES
    runtime = repo_root / 'configs' / '_base_' / 'gearnn_runtime.py'
    config = tmp_path / 'tiny_selection.py'
    config.write_text(
        f'_base_ = [{str(runtime)!r}]\n'
        f'distortion_space = {SPACE!r}\n'
        f'model = {model_cfg!r}\n'
        'train_pipeline = [\n'
        "    dict(type='RandomDistortion', space=distortion_space),\n"
        "    dict(type='PackSegInputs',\n"
        '         meta_keys={{_base_.gearnn_meta_keys}}),\n'
        ']\n'
        'train_dataloader = dict(\n'
        '    batch_size=2, num_workers=0,\n'
        "    sampler=dict(type='InfiniteSampler', shuffle=True),\n"
        "    dataset=dict(type='ProceduralStreetDataset', num_samples=4,\n"
        '                 img_size=(32, 48), seed=0,\n'
        '                 pipeline=train_pipeline))\n'
    )
    torch.manual_seed(0)
    model = make_trained_like(MODELS.build(copy.deepcopy(model_cfg)))
    checkpoint = tmp_path / 'base.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    return config, checkpoint, model


TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'select_params.py'


def run_tool(*args, cwd):
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
    )


def test_tool_end_to_end(tiny_setup, tmp_path, repo_root):
    config, checkpoint, model = tiny_setup
    out = tmp_path / 'work' / 'selection.json'
    result = run_tool(
        config,
        '--checkpoint',
        checkpoint,
        '--out',
        out,
        *'--method fisher --budget 0.02 --steps 1 --seed 3'.split(),
        *'--device cpu --no-progress --exclude-modules decode_head'.split(),
        *'--value element'.split(),
        cwd=repo_root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = load_selection(str(out), model=model, space=SPACE)
    assert record['knapsack_value'] == 'element'
    assert record['excluded_modules'] == ['decode_head']
    assert not [n for n in record['selected'] if n.startswith('decode_head')]
    names = {t.name for t in list_candidates(model)}
    budget = record['budget']
    assert record['method'] == 'fisher'
    assert 0 < budget['used_bytes'] <= budget['asked_bytes']
    assert budget['asked_fraction'] == 0.02
    assert record['selected'] and set(record['selected']) <= names
    assert {t['name'] for t in record['tensors']} == names
    assert record['config'] == str(config)
    assert record['checkpoint']['path'] == str(checkpoint)
    assert record['seed'] == 3
    assert record['distortion_space'] == dict(SPACE, snap='error')
    assert len(record['method_options']['levels']) == 3
    # The console table.
    log = result.stdout + result.stderr
    assert 'adaptor selection: method=fisher' in log
    # one wording of the adaptor's size (the selected tensors with their BN
    # buffers)
    size = adaptor_size_text(record['selected']).split(' (')[0]
    assert size in log, log[-3000:]


def test_tool_selects_again_from_stored_scores(tiny_setup, tmp_path):
    config, checkpoint, model = tiny_setup
    scored = tmp_path / 'scored.json'
    common = ['--method', 'fisher', '--steps', '1', '--no-progress']
    first = run_tool(
        config, '--checkpoint', checkpoint, '--out', scored, '--budget',
        '0.02', *common, cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    larger = tmp_path / 'larger.json'
    result = run_tool(
        config, '--scores-from', scored, '--checkpoint', checkpoint,
        '--budget', '0.2', '--out', larger, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    source = load_selection(str(scored))
    record = load_selection(str(larger), model=model, space=SPACE)
    assert record['method'] == 'fisher'
    assert [t['score'] for t in record['tensors']] == [
        t['score'] for t in source['tensors']
    ]
    assert set(source['selected']) < set(record['selected'])
    assert record['budget']['asked_fraction'] == 0.2
    assert record['scores_from']['path'] == str(scored)
    # Scores of another base, or a method given twice, are refused.
    other = tmp_path / 'other.pth'
    state = {k: v + 1 for k, v in model.state_dict().items()}
    torch.save(dict(state_dict=state), other)
    mismatch = run_tool(
        config, '--scores-from', scored, '--checkpoint', other,
        '--budget', '0.2', '--out', tmp_path / 'x.json', cwd=tmp_path,
    )  # fmt: skip
    assert mismatch.returncode == 1
    assert 'was scored on another base checkpoint' in mismatch.stderr
    assert 'Traceback' not in mismatch.stderr
    twice = run_tool(
        config, '--scores-from', scored, '--method', 'rgn',
        '--budget', '0.2', '--out', tmp_path / 'x.json', cwd=tmp_path,
    )  # fmt: skip
    assert twice.returncode == 2
    assert 'takes the scoring method of its file' in twice.stderr
    assert not (tmp_path / 'x.json').exists()


@pytest.mark.faults
def test_tool_reports_errors_without_traceback(tiny_setup, tmp_path):
    config, checkpoint, _ = tiny_setup
    result = run_tool(
        config,
        '--checkpoint',
        checkpoint,
        '--method',
        'random',
        '--budget-bytes',
        '4',
        '--out',
        tmp_path / 's.json',
        cwd=tmp_path,  # any working directory works
    )
    assert result.returncode == 1
    assert 'select_params: error: the budget of 4 bytes' in result.stderr
    assert 'smallest candidate tensor' in result.stderr
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 's.json').exists()


def test_from_config_weight_change_on_a_level_subset(tiny_setup, tmp_path):
    config, checkpoint, model = tiny_setup
    cfg = Config.fromfile(str(config))
    record = run_selection_from_config(
        cfg,
        str(checkpoint),
        'weight_change',
        config_path=str(config),
        budget=0.05,
        levels=['jpeg:10', '2'],
        steps=1,
        progress=False,
        out=str(tmp_path / 'wc.json'),
    )
    assert record['method_options']['levels'] == [
        ['brightness', 0.2],
        ['jpeg', 10],
    ]
    assert all(t['raw_score'] > 0 for t in record['tensors'])
    assert record['budget']['used_bytes'] <= record['budget']['asked_bytes']
    load_selection(str(tmp_path / 'wc.json'), model=model, space=SPACE)


def test_from_config_errors(tiny_setup):
    config, checkpoint, _ = tiny_setup
    cfg = Config.fromfile(str(config))
    no_space = copy.deepcopy(cfg)
    no_space.pop('distortion_space')
    with pytest.raises(ValueError, match='no top-level `distortion_space`'):
        run_selection_from_config(no_space, str(checkpoint), 'bn', budget=0.1)
    other = copy.deepcopy(cfg)
    other.model.decode_head.channels = 4
    with pytest.raises(ValueError, match='shape mismatches') as err:
        run_selection_from_config(other, str(checkpoint), 'bn', budget=0.1)
    assert 'decode_head.conv_seg.weight (checkpoint (8, 8, 1, 1), model ' in (
        str(err.value)
    )


def test_dataloader_source_distorts_as_asked(tiny_setup):
    config, _, _ = tiny_setup
    cfg = Config.fromfile(str(config))
    source = DataloaderBatchSource(cfg.train_dataloader, SPACE, seed=0)

    def gears(batch):
        return [
            s.metainfo['distortion']['gear'] for s in batch['data_samples']
        ]

    # One level: FixedDistortion replaced the config's RandomDistortion.
    stream = source.level_batches('jpeg', 10)
    for _ in range(3):
        assert gears(next(stream)) == [3, 3]
    # Every level: RandomDistortion that never leaves an image clean.
    stream = source.mixed_batches(parse_levels(SPACE))
    seen = {g for _ in range(6) for g in gears(next(stream))}
    assert 0 not in seen and seen <= {1, 2, 3}
    # A subset: its levels in turn.
    stream = source.mixed_batches(parse_levels(SPACE, ['1', '3']))
    assert [gears(next(stream)) for _ in range(4)] == [[1, 1], [3, 3]] * 2
