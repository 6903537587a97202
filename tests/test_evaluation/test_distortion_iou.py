import json
import math

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS
from mmseg.structures import SegDataSample

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.evaluation import (
    DistortionIoUMetric,
    format_class_table,
    format_miou_table,
)

CLASSES = ('a', 'b', 'c')
SPACE = dict(distortions=dict(brightness=[0.5, 0.2], jpeg=[40, 10]))

# Hand-made 2x3 maps over 3 classes; 255 is ignored.
#  clean: a perfect prediction: IoU 1, 1, 1 -> mIoU 100.
CLEAN_GT = [[0, 0, 1], [1, 2, 2]]
CLEAN_PRED = [[0, 0, 1], [1, 2, 2]]
#  jpeg 10: IoU a 1/3, b 2/3, c 1/2 -> mIoU 50.
JPEG_GT = [[0, 0, 1], [1, 2, 2]]
JPEG_PRED = [[0, 1, 1], [1, 2, 0]]
#  brightness 0.2: the two pixels labelled 255 are ignored, so class c is
#  in neither map (NaN, skipped): IoU a 2/3, b 1/2 -> mIoU 7/12 = 58.33.
#  Counting them would give c an IoU of 0 and mIoU 38.89.
BRIGHT_GT = [[0, 0, 0], [1, 255, 255]]
BRIGHT_PRED = [[0, 0, 1], [1, 2, 2]]
# All three: intersect 5, 5, 3; union 8, 7, 4; label 7, 5, 4 of 16 pixels.
OVERALL = dict(
    aAcc=81.25,  # 13 / 16
    mIoU=69.64,  # (5/8 + 5/7 + 3/4) / 3
    mAcc=82.14,  # (5/7 + 5/5 + 3/4) / 3
)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmseg')


def sample(gt, pred, distortion=None):
    """A data sample as the Evaluator hands it to a metric."""
    data_sample = SegDataSample()
    if distortion is not None:
        data_sample.set_metainfo(dict(distortion=distortion))
    data_sample.gt_sem_seg = PixelData(data=torch.tensor([gt]))
    data_sample.pred_sem_seg = PixelData(data=torch.tensor([pred]))
    return data_sample


def three_groups():
    return [
        sample(JPEG_GT, JPEG_PRED, dict(type='jpeg', level=10, gear=4)),
        sample(CLEAN_GT, CLEAN_PRED),  # no distortion metadata: clean
        sample(
            BRIGHT_GT, BRIGHT_PRED, dict(type='brightness', level=0.2, gear=2)
        ),
    ]


def build(**kwargs):
    metric = METRICS.build(dict(type='DistortionIoUMetric', **kwargs))
    metric.dataset_meta = dict(classes=CLASSES)
    return metric


def run(metric, samples):
    metric.process({}, [s.to_dict() for s in samples])
    return metric.compute_metrics(metric.results)


def test_registered_without_clashing():
    assert METRICS.get('DistortionIoUMetric') is DistortionIoUMetric
    assert METRICS.get('IoUMetric') is IoUMetric


def test_hand_computed_values_and_keys():
    metrics = run(build(), three_groups())
    assert metrics == {
        **OVERALL,
        'clean/mIoU': 100.0,
        'jpeg/10/mIoU': 50.0,
        'jpeg/mean/mIoU': 50.0,
        'brightness/0.2/mIoU': 58.33,
        'brightness/mean/mIoU': 58.33,
        'mean_distorted/mIoU': 54.17,  # (50 + 58.333) / 2
    }
    # First-seen order without a space.
    assert list(metrics)[3:6] == [
        'clean/mIoU',
        'jpeg/10/mIoU',
        'jpeg/mean/mIoU',
    ]
    assert all(isinstance(v, float) for v in metrics.values())


def test_overall_matches_mmseg_iou_metric():
    samples = three_groups()
    iou = IoUMetric()
    iou.dataset_meta = dict(classes=CLASSES)
    iou.process({}, [s.to_dict() for s in samples])
    expected = iou.compute_metrics(iou.results)
    metrics = run(build(), samples)
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert metrics[key] == pytest.approx(float(expected[key]))


def test_group_accumulates_areas_over_its_samples():
    # Two jpeg 10 samples: group IoU from summed areas, like mmseg over a
    # dataset, not the mean of per-image mIoU ((50 + 100) / 2 = 75).
    # a: 3/5, b: 4/5, c: 3/4 -> 71.67.
    metrics = run(
        build(),
        [
            sample(JPEG_GT, JPEG_PRED, dict(type='jpeg', level=10)),
            sample(CLEAN_GT, CLEAN_PRED, dict(type='jpeg', level=10)),
        ],
    )
    assert metrics['jpeg/10/mIoU'] == 71.67
    assert 'clean/mIoU' not in metrics


def test_ignore_index_is_configurable():
    # With ignore_index=0, class a is dropped from the labels.
    metrics = run(build(ignore_index=0), [sample(JPEG_GT, JPEG_PRED)])
    # Kept pixels labelled b, b, c, c are predicted b, b, c, a:
    # a: I 0, U 1 -> 0; b: I 2, U 2 -> 1; c: I 1, U 2 -> 1/2.
    assert metrics['clean/mIoU'] == 50.0
    assert metrics['aAcc'] == 75.0


def test_missing_and_explicit_clean_are_one_group():
    metrics = run(
        build(),
        [
            sample(CLEAN_GT, CLEAN_PRED),
            sample(JPEG_GT, JPEG_PRED, dict(type='clean', level=None, gear=0)),
        ],
    )
    # Both samples summed: a 3/5, b 4/5, c 3/4 -> 71.67.
    assert metrics == {
        'aAcc': 83.33,
        'mIoU': 71.67,
        'mAcc': 83.33,
        'clean/mIoU': 71.67,
    }


def test_per_type_mean_and_space_order(tmp_path):
    out = tmp_path / 'sub' / 'miou.json'
    metric = build(space=SPACE, output_file=str(out))
    metrics = run(
        metric,
        [
            sample(JPEG_GT, JPEG_PRED, dict(type='jpeg', level=10, gear=4)),
            sample(
                CLEAN_GT, CLEAN_PRED, dict(type='jpeg', level=40.0, gear=3)
            ),
            sample(CLEAN_GT, CLEAN_PRED),
            # float32 metadata still matches the listed level 0.2.
            sample(
                BRIGHT_GT,
                BRIGHT_PRED,
                dict(type='brightness', level=np.float32(0.2), gear=2),
            ),
        ],
    )
    assert metrics['jpeg/40/mIoU'] == 100.0
    assert metrics['jpeg/mean/mIoU'] == 75.0
    assert metrics['mean_distorted/mIoU'] == 69.44  # (50 + 100 + 58.33) / 3
    # The space lists brightness first and jpeg 40 before 10.
    group_keys = [k for k in metrics if k.count('/') == 2]
    assert group_keys == [
        'brightness/0.2/mIoU',
        'brightness/mean/mIoU',
        'jpeg/40/mIoU',
        'jpeg/10/mIoU',
        'jpeg/mean/mIoU',
    ]
    report = json.loads(out.read_text())
    assert list(report['levels']) == ['brightness', 'jpeg']
    assert list(report['levels']['jpeg']) == ['40', '10']
    assert report['per_type_mean'] == {'brightness': 58.33, 'jpeg': 75.0}
    assert report['num_samples'] == {
        'overall': 4,
        'clean': 1,
        'levels': {'brightness': {'0.2': 1}, 'jpeg': {'40': 1, '10': 1}},
    }
    assert not list(out.parent.glob('*.tmp'))


def test_output_json_content(tmp_path):
    out = tmp_path / 'miou.json'
    run(build(output_file=str(out)), three_groups())
    report = json.loads(out.read_text())
    # Per class: test_per_class_iou_clean_distorted_and_table.
    assert set(report.pop('per_class_iou')) == {
        'clean',
        'mean_distorted',
        'levels',
    }
    assert report == {
        'overall': OVERALL,
        'clean': 100.0,
        'levels': {'jpeg': {'10': 50.0}, 'brightness': {'0.2': 58.33}},
        'per_type_mean': {'jpeg': 50.0, 'brightness': 58.33},
        'mean_distorted': 54.17,
        'num_samples': {
            'overall': 3,
            'clean': 1,
            'levels': {'jpeg': {'10': 1}, 'brightness': {'0.2': 1}},
        },
    }
    assert [p.name for p in tmp_path.iterdir()] == ['miou.json']


def test_json_writes_null_for_a_group_without_valid_pixels(tmp_path):
    out = tmp_path / 'miou.json'
    all_ignored = [[255, 255, 255], [255, 255, 255]]
    metrics = run(
        build(output_file=str(out)),
        [
            sample(CLEAN_GT, CLEAN_PRED),
            sample(all_ignored, JPEG_PRED, dict(type='jpeg', level=10)),
        ],
    )
    assert math.isnan(metrics['jpeg/10/mIoU'])
    report = json.loads(out.read_text())
    assert report['levels'] == {'jpeg': {'10': None}}
    assert report['mean_distorted'] is None
    assert report['clean'] == 100.0


@pytest.mark.faults
def test_level_outside_space_is_an_error():
    metric = build(space=SPACE)
    with pytest.raises(ValueError, match=r"level 20 .*'jpeg'.*\[40, 10\]"):
        metric.process(
            {},
            [
                sample(
                    JPEG_GT, JPEG_PRED, dict(type='jpeg', level=20)
                ).to_dict()
            ],
        )


@pytest.mark.faults
def test_type_outside_space_and_nearest_snap_are_errors():
    metric = build(space=SPACE)
    with pytest.raises(ValueError, match="'gaussian_noise'"):
        metric.process(
            {},
            [
                sample(
                    JPEG_GT,
                    JPEG_PRED,
                    dict(type='gaussian_noise', level=10),
                ).to_dict()
            ],
        )
    # A space configured to snap still refuses to regroup a sample.
    metric = build(space=dict(SPACE, snap='nearest'))
    with pytest.raises(ValueError, match='level 0.3'):
        metric.process(
            {},
            [
                sample(
                    JPEG_GT, JPEG_PRED, dict(type='brightness', level=0.3)
                ).to_dict()
            ],
        )


@pytest.mark.faults
def test_type_without_level_and_missing_classes_are_errors():
    metric = build()
    with pytest.raises(ValueError, match='no level'):
        metric.process(
            {}, [sample(JPEG_GT, JPEG_PRED, dict(type='jpeg')).to_dict()]
        )
    metric = METRICS.build(dict(type='DistortionIoUMetric'))
    with pytest.raises(ValueError, match='classes'):
        metric.process({}, [sample(JPEG_GT, JPEG_PRED).to_dict()])


def test_gear_only_metadata_uses_the_space():
    metric = build(space=SPACE)
    # Gear 4 of SPACE is jpeg 10.
    metrics = run(metric, [sample(JPEG_GT, JPEG_PRED, dict(gear=4))])
    assert metrics['jpeg/10/mIoU'] == 50.0


def test_table_lists_types_by_level():
    metric = build()
    metric.process({}, [s.to_dict() for s in three_groups()])
    report = metric.report(metric.results)
    lines = format_miou_table(report).splitlines()
    assert 'Level 1' in lines[1] and 'Mean' in lines[1]
    rows = {line.split('|')[1].strip(): line for line in lines[3:-1]}
    assert list(rows) == [
        'jpeg',
        'brightness',
        'clean',
        'mean_distorted',
        'overall',
    ]
    assert '10: 50.00' in rows['jpeg']
    assert '0.2: 58.33' in rows['brightness']
    assert rows['clean'].rstrip(' |').endswith('100.00')
    assert rows['overall'].rstrip(' |').endswith('69.64')


def test_through_mmengine_evaluator(tmp_path):
    out = tmp_path / 'miou.json'
    evaluator = Evaluator(
        dict(type='DistortionIoUMetric', space=SPACE, output_file=str(out))
    )
    evaluator.dataset_meta = dict(classes=CLASSES)
    samples = three_groups()
    evaluator.process(data_samples=samples[:2], data_batch={})
    evaluator.process(data_samples=samples[2:], data_batch={})
    metrics = evaluator.evaluate(len(samples))
    assert metrics == {
        **OVERALL,
        'clean/mIoU': 100.0,
        'brightness/0.2/mIoU': 58.33,
        'brightness/mean/mIoU': 58.33,
        'jpeg/10/mIoU': 50.0,
        'jpeg/mean/mIoU': 50.0,
        'mean_distorted/mIoU': 54.17,
    }
    assert json.loads(out.read_text())['clean'] == 100.0
    # evaluate() resets the results for the next round.
    assert evaluator.metrics[0].results == []


def test_table_with_space_shows_every_level_in_its_column():
    metric = build(space=SPACE)
    metric.process({}, [s.to_dict() for s in three_groups()])
    table = format_miou_table(metric.report(metric.results), metric.space)
    header, *rows = [
        [cell.strip() for cell in line.split('|')[1:-1]]
        for line in table.splitlines()
        if line.startswith('|')
    ]
    assert header == ['Type', 'Level 1', 'Level 2', 'Mean']
    assert rows[:2] == [
        ['brightness', '0.5: -', '0.2: 58.33', '58.33'],
        ['jpeg', '40: -', '10: 50.00', '50.00'],
    ]


def test_per_class_iou_clean_distorted_and_table():
    metric = build()
    metric.process({}, [s.to_dict() for s in three_groups()])
    per_class = metric.report(metric.results)['per_class_iou']
    assert per_class['clean'] == {'a': 100.0, 'b': 100.0, 'c': 100.0}
    assert per_class['levels'] == {
        'jpeg': {'10': {'a': 33.33, 'b': 66.67, 'c': 50.0}},
        # c is in neither map of the brightness sample: unknown, not 0.
        'brightness': {'0.2': {'a': 66.67, 'b': 50.0, 'c': None}},
    }
    # Each distorted level weighs the same; a level without the class
    # does not count for it.
    assert per_class['mean_distorted'] == {'a': 50.0, 'b': 58.33, 'c': 50.0}
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [c.strip() for c in line.split('|')[1:-1]]
            for line in format_class_table(
                metric.report(metric.results)
            ).splitlines()
            if line.startswith('|')
        )
    }
    assert rows['Class'] == ['IoU clean', 'IoU mean distorted', 'Change']
    assert rows['a'] == ['100.00', '50.00', '-50.00']
    assert rows['c'] == ['100.00', '50.00', '-50.00']
