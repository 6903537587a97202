import json

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import METRICS
from mmseg.structures import SegDataSample

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.evaluation import (
    corruption_errors,
    corruption_table,
    format_robustness_table,
    mce,
    mean_per_corruption,
    mean_per_group,
    mpc,
    robustness_summary,
    rpc,
)

CLEAN = 80.0
# A hand-made report's levels: three benchmark corruptions (noise, and two
# of weather, one cell of frost not measurable), one held-out corruption,
# and one type that is no corruption.
LEVELS = {
    'ic_gaussian_noise': {'1': 60.0, '2': 40.0, '3': 20.0},
    'ic_fog': {'1': 70.0, '2': 50.0, '3': 60.0},
    'ic_frost': {'1': 50.0, '2': None, '3': 30.0},
    'ic_spatter': {'1': 75.0, '2': 65.0, '3': 55.0},
    'jpeg': {'10': 10.0},
}
# The reference model (e.g. the clean model), with a severity more.
REFERENCE = {
    'ic_gaussian_noise': {'1': 80.0, '2': 70.0, '3': 50.0, '4': 10.0},
    'ic_fog': {'1': 90.0, '2': 80.0, '3': 70.0},
    'ic_frost': {'1': 90.0, '2': 80.0, '3': 70.0},
    'ic_spatter': {'1': 95.0, '2': 85.0, '3': 75.0},
}


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmseg')


def test_corruption_table():
    table = corruption_table(LEVELS)
    assert list(table) == ['gaussian_noise', 'fog', 'frost', 'spatter']
    assert table['fog'] == {1: 70.0, 2: 50.0, 3: 60.0}


def test_each_number_of_a_hand_made_table():
    table = corruption_table(LEVELS)
    assert mean_per_corruption(table) == {
        'gaussian_noise': 40.0,  # (60 + 40 + 20) / 3
        'fog': 60.0,  # (70 + 50 + 60) / 3
        'frost': 40.0,  # (50 + 30) / 2: the None cell is left out
        'spatter': 65.0,
    }
    # noise: gaussian_noise only; weather: the 5 cells of fog and frost;
    # held_out: spatter; no blur or digital corruption measured.
    assert mean_per_group(table) == {
        'noise': 40.0,
        'weather': 52.0,  # (70 + 50 + 60 + 50 + 30) / 5
        'held_out': 65.0,
    }
    # The 8 benchmark cells: (120 + 180 + 80) / 8; spatter is held out.
    assert mpc(table) == 47.5
    assert rpc(47.5, CLEAN) == 0.59375
    errors = corruption_errors(table, corruption_table(REFERENCE))
    assert errors['gaussian_noise'] == 1.8  # (40 + 60 + 80) / (20 + 30 + 50)
    assert errors['fog'] == 2.0  # (30 + 50 + 40) / (10 + 20 + 30)
    assert errors['frost'] is None  # a cell is not measurable
    assert errors['spatter'] == pytest.approx(105 / 45)
    # Over the benchmark corruptions: (1.8 + 2.0) / 2.
    assert mce(table, corruption_table(REFERENCE)) == pytest.approx(1.9)
    summary = robustness_summary(CLEAN, LEVELS, REFERENCE)
    assert summary['P'] == CLEAN and summary['mPC'] == 47.5
    assert summary['rPC'] == 0.59375
    assert summary['mCE'] == pytest.approx(1.9)
    assert 'CE' not in robustness_summary(CLEAN, LEVELS)


def test_reference_model_against_itself():
    table = corruption_table(REFERENCE)
    errors = corruption_errors(table, table)
    assert errors == {c: 1.0 for c in table}
    assert mce(table, table) == 1.0


def test_missing_values():
    assert mpc({}) is None
    assert rpc(None, CLEAN) is None and rpc(40.0, 0.0) is None
    assert mean_per_group({}) == {}
    with pytest.raises(ValueError, match="reference lacks 'fog'"):
        corruption_errors({'fog': {1: 50.0}}, {'frost': {1: 60.0}})
    with pytest.raises(ValueError, match='severities \\[4\\]'):
        corruption_errors({'fog': {4: 50.0}}, {'fog': {1: 60.0}})
    perfect = {'fog': {1: 100.0}}
    assert corruption_errors({'fog': {1: 90.0}}, perfect) == {'fog': None}


# Hand-made 2x3 maps over 3 classes.
GT = [[0, 0, 1], [1, 2, 2]]
PERFECT = [[0, 0, 1], [1, 2, 2]]
HALF = [[0, 1, 1], [1, 2, 0]]  # IoU 1/3, 2/3, 1/2: mIoU 50


def sample(pred, distortion=None):
    data_sample = SegDataSample()
    if distortion is not None:
        data_sample.set_metainfo(dict(distortion=distortion))
    data_sample.gt_sem_seg = PixelData(data=torch.tensor([GT]))
    data_sample.pred_sem_seg = PixelData(data=torch.tensor([pred]))
    return data_sample.to_dict()


def test_metric_reports_corruption_metrics(tmp_path):
    out = tmp_path / 'levels.json'
    metric = METRICS.build(
        dict(
            type='DistortionIoUMetric',
            space=dict(
                distortions=dict(ic_shot_noise=[1, 2], ic_saturate=[3])
            ),
            output_file=str(out),
        )
    )
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    shot = dict(type='ic_shot_noise', level=1, gear=1)
    metric.process(
        {},
        [
            sample(PERFECT),
            sample(HALF, shot),
            sample(PERFECT, dict(shot, level=2, gear=2)),
            sample(HALF, dict(type='ic_saturate', level=3, gear=3)),
        ],
    )
    metrics = metric.compute_metrics(metric.results)
    # shot noise at 1: 50, at 2: 100; saturate (held out) at 3: 50.
    assert metrics['mPC'] == 75.0 and metrics['rPC'] == 0.75
    assert metrics['noise/mIoU'] == 75.0
    assert metrics['held_out/mIoU'] == 50.0
    report = json.loads(out.read_text())
    assert report['robustness'] == dict(
        P=100.0,
        mPC=75.0,
        rPC=0.75,
        per_corruption=dict(shot_noise=75.0, saturate=50.0),
        per_group=dict(noise=75.0, held_out=50.0),
    )
    table = format_robustness_table(report['robustness'])
    assert 'mPC' in table and 'saturate' in table


def test_metric_without_corruptions_reports_none():
    metric = METRICS.build(dict(type='DistortionIoUMetric'))
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    metric.process({}, [sample(HALF, dict(type='jpeg', level=10, gear=1))])
    metrics = metric.compute_metrics(metric.results)
    assert 'mPC' not in metrics
    assert 'robustness' not in metric.report(metric.results)
