import copy
import re

import cv2
import numpy as np
import pytest
import torch
from camvid_layout import make_tiny_camvid
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import DATASETS, METRICS

import mmseg_gearnn  # noqa: F401  (registers the datasets)
from mmseg_gearnn.datasets import CamVidDataset


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


@pytest.fixture
def tiny_camvid(tmp_path):
    return make_tiny_camvid(tmp_path)


CLASSES = (
    'sky',
    'building',
    'pole',
    'road',
    'sidewalk',
    'tree',
    'sign_symbol',
    'fence',
    'car',
    'pedestrian',
    'bicyclist',
)


@pytest.fixture(scope='module')
def camvid_cfg(repo_root):
    return Config.fromfile(repo_root / 'configs/_base_/datasets/camvid.py')


def dataset_cfg(cfg, loader, root):
    """A dataloader's dataset config pointed at ``root``."""
    ds = copy.deepcopy(cfg[loader].dataset)
    inner = ds.dataset if ds.type == 'DistortionSweepDataset' else ds
    inner.data_root = str(root)
    return ds


def test_loads_layout_with_classes_and_palette(tiny_camvid):
    root = tiny_camvid['root']
    ds = DATASETS.build(
        dict(
            type='CamVidDataset',
            data_root=str(root),
            data_prefix=dict(img_path='train', seg_map_path='trainannot'),
        )
    )
    assert isinstance(ds, CamVidDataset) and len(ds) == 3
    assert ds.metainfo['classes'] == CLASSES
    assert len(ds.metainfo['palette']) == 11
    assert ds.metainfo['palette'][4] == [60, 40, 222]
    info = ds.get_data_info(0)
    assert info['img_path'] == str(root / 'train' / 'train_000.png')
    assert info['seg_map_path'] == str(root / 'trainannot' / 'train_000.png')
    assert info['label_map'] == {11: 255}
    assert info['num_classes'] == 11 and info['ignore_index'] == 255


def test_label_11_is_ignored_by_loading_and_by_iou(tiny_camvid, camvid_cfg):
    root, (h, w) = tiny_camvid['root'], tiny_camvid['shape']
    ds = DATASETS.build(dataset_cfg(camvid_cfg, 'val_dataloader', root))
    assert len(ds) == 2
    packed = ds[0]
    gt = packed['data_samples'].gt_sem_seg.data
    raw = cv2.imread(str(root / 'valannot' / 'val_000.png'), 0)
    assert gt.shape == (1, h, w)
    np.testing.assert_array_equal(gt[0].numpy() == 255, raw == 11)
    np.testing.assert_array_equal(gt[0].numpy()[raw != 11], raw[raw != 11])

    # A prediction that is right where labelled and wrong where unlabelled
    # scores 100: IoUMetric ignores the unlabelled pixels.
    pred = gt.clone()
    pred[gt == 255] = 0
    sample = packed['data_samples']
    sample.pred_sem_seg = PixelData(data=pred)
    metric = METRICS.build(dict(type='IoUMetric', iou_metrics=['mIoU']))
    metric.dataset_meta = ds.metainfo
    metric.process({}, [sample.to_dict()])
    assert metric.evaluate(1)['mIoU'] == pytest.approx(100.0)


def test_class_subset_maps_dropped_classes_to_ignore(tiny_camvid):
    root = tiny_camvid['root']
    ds = DATASETS.build(
        dict(
            type='CamVidDataset',
            data_root=str(root),
            data_prefix=dict(img_path='val', seg_map_path='valannot'),
            metainfo=dict(classes=('road', 'car')),
            pipeline=[dict(type='LoadCheckedAnnotations')],
        )
    )
    assert ds.metainfo['palette'] == [[128, 64, 128], [64, 0, 128]]
    gt = ds[0]['gt_seg_map']
    raw = cv2.imread(str(root / 'valannot' / 'val_000.png'), 0)
    expected = np.full_like(raw, 255)
    expected[raw == 3], expected[raw == 8] = 0, 1
    np.testing.assert_array_equal(gt, expected)


def test_train_pipeline_from_config(tiny_camvid, camvid_cfg):
    ds = DATASETS.build(
        dataset_cfg(camvid_cfg, 'train_dataloader', tiny_camvid['root'])
    )
    packed = ds[1]
    assert packed['inputs'].shape == (3, 240, 320)
    assert packed['inputs'].dtype == torch.uint8
    sample = packed['data_samples']
    assert sample.gt_sem_seg.data.shape == (1, 240, 320)
    values = set(sample.gt_sem_seg.data.unique().tolist())
    assert values <= set(range(11)) | {255}
    distortion = sample.metainfo['distortion']
    assert set(distortion) == {'type', 'level', 'gear'}
    assert 'flip' in sample.metainfo


def test_config_evaluators_and_test_sweep(tiny_camvid, camvid_cfg):
    assert camvid_cfg.val_evaluator.type == 'IoUMetric'
    assert camvid_cfg.test_evaluator.type == 'IoUMetric'
    sweep = DATASETS.build(
        dataset_cfg(camvid_cfg, 'test_dataloader', tiny_camvid['root'])
    )
    # 2 val images x (clean + 4 types x 5 levels).
    assert len(sweep) == 2 * 21
    assert sweep.metainfo['classes'] == CLASSES


def test_data_root_from_environment(monkeypatch, repo_root, tmp_path):
    monkeypatch.setenv('CAMVID_ROOT', str(tmp_path / 'elsewhere'))
    cfg = Config.fromfile(repo_root / 'configs/_base_/datasets/camvid.py')
    assert cfg.train_dataloader.dataset.data_root == str(
        tmp_path / 'elsewhere'
    )
    assert cfg.test_dataloader.dataset.dataset.data_root == str(
        tmp_path / 'elsewhere'
    )


@pytest.mark.faults
def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='CamVid folder not found'):
        DATASETS.build(
            dict(
                type='CamVidDataset',
                data_root=str(tmp_path),
                data_prefix=dict(img_path='val', seg_map_path='valannot'),
            )
        )


@pytest.mark.faults
def test_image_without_label_is_named(tiny_camvid):
    root = tiny_camvid['root']
    (root / 'valannot' / 'val_001.png').unlink()
    with pytest.raises(FileNotFoundError, match="'val_001.png'"):
        DATASETS.build(
            dict(
                type='CamVidDataset',
                data_root=str(root),
                data_prefix=dict(img_path='val', seg_map_path='valannot'),
            )
        )


@pytest.mark.faults
@pytest.mark.parametrize(
    'folder, damage, error, message',
    [
        ('val', 'delete', FileNotFoundError, 'image file not found'),
        ('val', 'truncate', ValueError, 'image file is corrupt'),
        ('valannot', 'truncate', ValueError, 'label file is corrupt'),
        ('valannot', 'out_of_range', ValueError, r'values \[12, 40\]'),
    ],
)
def test_bad_files_through_the_pipeline(
    tiny_camvid, camvid_cfg, folder, damage, error, message
):
    root = tiny_camvid['root']
    ds = DATASETS.build(dataset_cfg(camvid_cfg, 'val_dataloader', root))
    path = root / folder / 'val_001.png'
    if damage == 'delete':
        path.unlink()
    elif damage == 'truncate':
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        label = cv2.imread(str(path), 0)
        label[0, 0], label[5, 5] = 12, 40
        assert cv2.imwrite(str(path), label)
    assert ds[0]['inputs'].shape[0] == 3  # other samples still load
    with pytest.raises(error, match=message) as err:
        ds[1]
    assert re.search(re.escape(str(path)), str(err.value))


@pytest.mark.faults
def test_reduce_zero_label_is_refused(tiny_camvid):
    with pytest.raises(ValueError, match='label 0 is sky'):
        DATASETS.build(
            dict(
                type='CamVidDataset',
                data_root=str(tiny_camvid['root']),
                data_prefix=dict(img_path='val', seg_map_path='valannot'),
                reduce_zero_label=True,
            )
        )


def test_real_camvid(camvid_root, camvid_cfg):
    val = DATASETS.build(
        dataset_cfg(camvid_cfg, 'val_dataloader', camvid_root)
    )
    assert len(val) == 101
    packed = val[0]
    # Inference at the training resolution; scored on the native labels.
    assert packed['inputs'].shape == (3, 240, 320)
    assert packed['data_samples'].metainfo['ori_shape'] == (360, 480)
    gt = packed['data_samples'].gt_sem_seg.data
    assert gt.shape == (1, 360, 480)
    assert set(gt.unique().tolist()) <= set(range(11)) | {255}
    assert packed['data_samples'].metainfo['distortion']['type'] == 'clean'
    train = DATASETS.build(
        dataset_cfg(camvid_cfg, 'train_dataloader', camvid_root)
    )
    assert len(train) == 367
