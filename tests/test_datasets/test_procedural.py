import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import DATASETS, METRICS

import mmseg_gearnn  # noqa: F401  (registers the datasets)
from mmseg_gearnn.datasets import ProceduralStreetDataset
from mmseg_gearnn.datasets.procedural import (
    CLASSES,
    _fill_rect,
    render_street,
)


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def build(**kwargs):
    return DATASETS.build(dict(type='ProceduralStreetDataset', **kwargs))


@pytest.fixture(scope='module')
def streets_cfg(repo_root):
    return Config.fromfile(
        repo_root / 'configs/_base_/datasets/procedural_streets.py'
    )


def loader_dataset(cfg, loader, **overrides):
    ds = copy.deepcopy(cfg[loader].dataset)
    inner = ds.dataset if ds.type == 'DistortionSweepDataset' else ds
    inner.update(overrides)
    return ds


def test_shapes_dtypes_and_keys():
    ds = build(num_samples=3, img_size=(40, 56), seed=0)
    assert isinstance(ds, ProceduralStreetDataset) and len(ds) == 3
    info = ds.get_data_info(2)
    assert info['img'].shape == (40, 56, 3) and info['img'].dtype == np.uint8
    assert info['gt_seg_map'].shape == (40, 56)
    assert info['gt_seg_map'].dtype == np.uint8
    assert info['seg_fields'] == ['gt_seg_map']
    assert info['img_shape'] == info['ori_shape'] == (40, 56)
    assert info['img_path'] == 'procedural/000002'
    assert info['reduce_zero_label'] is False
    assert ds.metainfo['classes'] == CLASSES
    assert len(ds.metainfo['palette']) == len(CLASSES)


def test_deterministic_regardless_of_access_order():
    a = build(num_samples=4, seed=7)
    b = build(num_samples=4, seed=7)
    forward = [a.get_data_info(i) for i in range(4)]
    backward = [b.get_data_info(i) for i in reversed(range(4))][::-1]
    for x, y in zip(forward, backward):
        np.testing.assert_array_equal(x['img'], y['img'])
        np.testing.assert_array_equal(x['gt_seg_map'], y['gt_seg_map'])
    # Slicing keeps each sample's content.
    sliced = build(num_samples=4, seed=7, indices=[3])
    np.testing.assert_array_equal(
        sliced.get_data_info(0)['img'], forward[3]['img']
    )
    # Another seed, other images; other indices differ too.
    other = build(num_samples=4, seed=8).get_data_info(0)
    assert not np.array_equal(other['gt_seg_map'], forward[0]['gt_seg_map'])
    assert not np.array_equal(forward[0]['img'], forward[1]['img'])


def test_several_classes_and_objects():
    ds = build(num_samples=6, seed=0)
    seen = set()
    for i in range(len(ds)):
        values = set(np.unique(ds.get_data_info(i)['gt_seg_map']).tolist())
        assert values <= set(range(len(CLASSES)))
        # Sky, building, road, sidewalk and at least one car in each.
        assert {0, 1, 2, 3, 5} <= values
        seen |= values
    assert len(seen) >= 7


def lag_correlation(lum, mask, lag):
    """Correlation of the luminance with itself ``lag`` pixels right,
    over pixel pairs that both lie in ``mask``."""
    pairs = mask[:, :-lag] & mask[:, lag:]
    a, b = lum[:, :-lag][pairs], lum[:, lag:][pairs]
    return np.corrcoef(a, b)[0, 1]


def test_similar_greys_differ_in_texture():
    """Road and sidewalk share a grey; only their textures tell them apart:
    random grain on the road, 2-pixel tiles on the sidewalk; sky is smooth.
    """
    ds = build(num_samples=4, seed=0)
    colour, corr = {}, {}
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        img = info['img'].astype(np.float32)
        lum = img.mean(2)
        for cls in (0, 2, 3):  # sky, road, sidewalk
            mask = info['gt_seg_map'] == cls
            colour.setdefault(cls, []).append(img[mask].mean(0))
            corr.setdefault(cls, []).append(
                [lag_correlation(lum, mask, lag) for lag in (1, 2)]
            )
    road_vs_sidewalk = np.abs(np.mean(colour[2], 0) - np.mean(colour[3], 0))
    assert road_vs_sidewalk.max() < 40
    sky, road, sidewalk = (np.mean(corr[c], 0) for c in (0, 2, 3))
    assert sky[0] > 0.8 and sky[1] > 0.8  # smooth
    assert abs(road[0]) < 0.3 and abs(road[1]) < 0.3  # white grain
    assert sidewalk[1] < -0.6  # period-4 tiles: opposite 2 pixels on


def test_class_subset():
    ds = build(num_samples=2, seed=0, metainfo=dict(classes=('road', 'car')))
    full = build(num_samples=2, seed=0).get_data_info(0)['gt_seg_map']
    gt = ds.get_data_info(0)['gt_seg_map']
    expected = np.full_like(full, 255)
    expected[full == 2], expected[full == 5] = 0, 1
    np.testing.assert_array_equal(gt, expected)


@pytest.mark.faults
@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(num_samples=0), 'num_samples'),
        (dict(img_size=(8, 128)), 'img_size'),
        (dict(img_size=(96,)), 'img_size'),
        (dict(seed=-1), 'seed'),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


@pytest.mark.faults
def test_generate_out_of_range():
    with pytest.raises(IndexError, match=r'outside \[0, 2\)'):
        build(num_samples=2).generate(2)


def test_train_pipeline_from_config(streets_cfg):
    assert streets_cfg.train_dataloader.batch_size == 8
    assert streets_cfg.val_dataloader.batch_size == 1
    train_cfg = streets_cfg.train_dataloader.dataset
    val_cfg = streets_cfg.val_dataloader.dataset
    assert train_cfg.num_samples == 400 and val_cfg.num_samples == 60
    assert train_cfg.seed != val_cfg.seed
    ds = DATASETS.build(
        loader_dataset(streets_cfg, 'train_dataloader', num_samples=2)
    )
    packed = ds[0]
    assert packed['inputs'].shape == (3, 96, 128)
    assert packed['inputs'].dtype == torch.uint8
    sample = packed['data_samples']
    assert sample.gt_sem_seg.data.shape == (1, 96, 128)
    assert sample.metainfo['img_path'] == 'procedural/000000'
    assert 'flip' in sample.metainfo
    assert set(sample.metainfo['distortion']) == {'type', 'level', 'gear'}


def test_iou_metric_through_the_val_pipeline(streets_cfg):
    ds = DATASETS.build(
        loader_dataset(streets_cfg, 'val_dataloader', num_samples=2)
    )
    metric = METRICS.build(streets_cfg.val_evaluator)
    metric.dataset_meta = ds.metainfo
    for i in range(2):
        sample = ds[i]['data_samples']
        assert sample.metainfo['distortion']['type'] == 'clean'
        pred = sample.gt_sem_seg.data.clone()
        if i == 1:
            pred[:, : pred.shape[1] // 2] = 0  # half the rows called sky
        sample.pred_sem_seg = PixelData(data=pred)
        metric.process({}, [sample.to_dict()])
    miou = metric.evaluate(2)['mIoU']
    assert 50 < miou < 100


def test_config_test_sweep(streets_cfg):
    sweep = DATASETS.build(streets_cfg.test_dataloader.dataset)
    assert len(sweep) == 60 * 13  # clean + 4 types x 3 levels
    assert streets_cfg.test_evaluator.type == 'IoUMetric'


def test_objects_clipped_at_frame_edges():
    """A shape partly outside the frame is clipped, never wrapped round by
    negative indices; rendering works at the smallest sizes."""
    label = np.zeros((10, 20), np.uint8)
    _fill_rect(label, -5, 3, -8, -2, 5)  # wholly left of the frame
    assert not label.any()
    _fill_rect(label, -5, 3, -8, 4, 5)
    assert (label == 5).sum() == 4 * 5
    _fill_rect(label, 8, 30, 18, 40, 6)
    assert (label == 6).sum() == 2 * 2
    for i in range(50):
        img, gt = render_street(np.random.default_rng((11, i)), (16, 16))
        assert img.shape == (16, 16, 3) and gt.shape == (16, 16)
