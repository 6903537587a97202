"""benchmarks/levels_between.py on the procedural demo config: a randomly
initialised GearNN checkpoint, two 32x48 images."""

import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import levels_between

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = (
    REPO_ROOT / 'configs/gearnn/gearnn_deeplabv3plus_r18-tiny_1xb8-600_'
    'procedural-96x128.py'
)
SIZE = (32, 48)


@pytest.fixture(scope='module')
def script():
    return levels_between


def tiny_config() -> Config:
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.data_preprocessor.size = SIZE
    cfg.model.segmentor.data_preprocessor.size = SIZE
    inner = cfg.test_dataloader.dataset.dataset
    inner.img_size = SIZE
    inner.num_samples = 4
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    cfg.test_dataloader.batch_size = 2
    return cfg


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(tiny_config().model)
    model.init_weights()
    # Gears unlike the base and unlike each other.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for gear in range(1, model.gear_bank.num_gears):
            for name, t in model.gear_bank.tensors(gear).items():
                if t.is_floating_point() and not name.endswith('var'):
                    t.add_(torch.randn(t.shape, generator=g) * 0.3)
    path = tmp_path_factory.mktemp('ckpt') / 'gearnn.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), str(path))
    return str(path)


def test_conditions(script):
    from mmseg_gearnn.distortions import DistortionSpace

    space = DistortionSpace(
        dict(
            jpeg=[20, 10, 5, 3, 1],
            gaussian_noise=[10, 20],
            brightness=[0.4, 0.2, 0.1],
        )
    )
    # Halfway, JPEG rounded to integers, never a listed level.
    assert script.mid_levels(space) == dict(
        jpeg=[15, 8, 4, 2], gaussian_noise=[15.0], brightness=[0.3, 0.15]
    )
    # Mid-to-harsh: middle/middle, harshest/middle, middle/harshest (noise
    # has two levels: its middle is its harshest).
    assert script.default_compounds(space) == [
        [dict(type='gaussian_noise', level=20), dict(type='jpeg', level=5)],
        [dict(type='gaussian_noise', level=20), dict(type='jpeg', level=1)],
        [dict(type='brightness', level=0.2), dict(type='jpeg', level=5)],
        [dict(type='brightness', level=0.1), dict(type='jpeg', level=5)],
        [dict(type='brightness', level=0.2), dict(type='jpeg', level=1)],
    ]
    assert script.parse_compound('brightness:0.1,jpeg:5.0') == [
        dict(type='brightness', level=0.1),
        dict(type='jpeg', level=5),
    ]


def test_runs_every_policy_and_writes_the_tables(
    script, checkpoint, tmp_path, capsys, monkeypatch
):
    cfg_file = tmp_path / 'tiny.py'
    tiny_config().dump(str(cfg_file))
    out = tmp_path / 'levels_between.json'
    results = script.main(
        [
            str(cfg_file),
            checkpoint,
            '--val-images',
            '2',
            '--compounds',
            'brightness:0.2,jpeg:15',
            'gaussian_noise:60,jpeg:30',
            'gaussian_noise:15,jpeg:5',
            '--work-dir',
            str(tmp_path / 'work'),
            '--out',
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert '--val-images 2' in results['command']
    # The demo table: brightness [0.4, 0.2, 0.1], jpeg [30, 15, 5],
    # resolution [0.5, 0.25, 0.125], noise [15, 30, 60].
    mids = {(m['type'], m['level']) for m in results['mid_levels']}
    assert mids == {
        ('brightness', 0.3),
        ('brightness', 0.15),
        ('jpeg', 22),
        ('jpeg', 10),
        ('resolution', 0.375),
        ('resolution', 0.1875),
        ('gaussian_noise', 22.5),
        ('gaussian_noise', 45.0),
    }
    miou = results['miou']
    assert set(miou['mid_levels']) == {'clean model', 'nearest', 'interpolate'}
    assert set(miou['compounds']) == {
        'clean model',
        'first',
        'dominant (rank)',
        'dominant (drop)',
        'blend',
    }
    for part in ('mid_levels', 'compounds'):
        for policy, values in miou[part].items():
            assert len(values) == (8 if part == 'mid_levels' else 3)
            assert all(0 <= v <= 100 for v in values.values())
            assert results['mean'][part][policy] == pytest.approx(
                sum(values.values()) / len(values), abs=0.01
            )
    # By rank, brightness 0.2 and jpeg 15 tie (2/3: the first wins), noise
    # 60 (3/3) beats jpeg 30 (1/3), jpeg 5 (3/3) beats noise 15 (1/3).
    assert [c['dominant_rank'] for c in results['compounds']] == [
        'brightness',
        'gaussian_noise',
        'jpeg',
    ]
    assert 'dominant (rank)' not in results['not_rerun']
    # Where dominant picks the first component, its run routes as 'first'
    # does on the same items (the same noise): the same mIoU.
    compounds = miou['compounds']
    for name in ('brightness+jpeg/0.2+15', 'gaussian_noise+jpeg/60+30'):
        assert compounds['dominant (rank)'][name] == compounds['first'][name]
    # Interpolated adaptors are not the nearest gear's; neither is the base.
    assert miou['mid_levels']['interpolate'] != miou['mid_levels']['nearest']
    # The measured drop comes from the clean model over the gear table.
    assert results['severity']['source'].endswith('levels.json')
    assert set(results['severity']['drop']) == {
        'brightness',
        'jpeg',
        'resolution',
        'gaussian_noise',
    }
    assert results['clean_miou'] is not None
    printed = capsys.readouterr().out
    assert '| brightness+jpeg/0.2+15 |' in printed
    assert '| **mean** |' in printed
