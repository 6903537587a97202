import re

import cv2
import numpy as np
import pytest
from camvid_layout import H, W, make_tiny_camvid
from mmengine.registry import init_default_scope
from mmseg.registry import TRANSFORMS

import mmseg_gearnn  # noqa: F401  (registers the datasets)

pytestmark = pytest.mark.faults


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


@pytest.fixture
def tiny_camvid(tmp_path):
    return make_tiny_camvid(tmp_path)


def write_label(path, label):
    assert cv2.imwrite(str(path), label)


def load_image(path, **kwargs):
    t = TRANSFORMS.build(dict(type='LoadCheckedImageFromFile', **kwargs))
    return t(dict(img_path=str(path)))


def load_label(path, num_classes=11, transform_args=None, **extra):
    t = TRANSFORMS.build(
        dict(type='LoadCheckedAnnotations', **(transform_args or {}))
    )
    results = dict(
        seg_map_path=str(path), reduce_zero_label=False, seg_fields=[]
    )
    if num_classes is not None:
        results['num_classes'] = num_classes
    results.update(extra)
    return t(results)


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_loads_good_files(tiny_camvid):
    root = tiny_camvid['root']
    stem = tiny_camvid['stems']['val'][0]
    results = load_image(root / 'val' / f'{stem}.png')
    assert results['img'].shape == (H, W, 3)
    assert results['img'].dtype == np.uint8
    assert results['ori_shape'] == (H, W)
    expected = cv2.imread(str(root / 'valannot' / f'{stem}.png'), 0)
    results = load_label(root / 'valannot' / f'{stem}.png', num_classes=12)
    np.testing.assert_array_equal(results['gt_seg_map'], expected)
    assert results['seg_fields'] == ['gt_seg_map']


def test_missing_image_names_the_file(tmp_path):
    path = tmp_path / 'no_such.png'
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_image(path)


def test_missing_label_names_the_file(tmp_path):
    path = tmp_path / 'no_such_label.png'
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_label(path)


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_truncated_image_names_the_file(tiny_camvid, backend):
    path = tiny_camvid['root'] / 'train' / 'train_000.png'
    truncate(path)
    with pytest.raises(ValueError, match='corrupt or truncated') as err:
        load_image(path, imdecode_backend=backend)
    assert str(path) in str(err.value)


def test_garbage_and_empty_image(tmp_path):
    garbage = tmp_path / 'garbage.png'
    garbage.write_bytes(b'this is not a png')
    with pytest.raises(ValueError, match=re.escape(str(garbage))):
        load_image(garbage)
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    with pytest.raises(ValueError, match='empty: ' + re.escape(str(empty))):
        load_image(empty)


def test_ignore_empty_returns_none(tmp_path):
    assert load_image(tmp_path / 'no_such.png', ignore_empty=True) is None


def test_truncated_label_names_the_file(tiny_camvid):
    path = tiny_camvid['root'] / 'valannot' / 'val_001.png'
    truncate(path)
    with pytest.raises(ValueError, match='corrupt or truncated') as err:
        load_label(path)
    assert str(path) in str(err.value)


def test_out_of_range_label_names_file_and_values(tmp_path):
    path = tmp_path / 'bad.png'
    label = np.zeros((H, W), np.uint8)
    label[0, :3] = [11, 12, 200]
    label[1, 0] = 255  # the ignore index is fine
    write_label(path, label)
    with pytest.raises(ValueError) as err:
        load_label(path, num_classes=11)
    message = str(err.value)
    assert str(path) in message and '[11, 12, 200]' in message
    assert '255' in message  # mentioned as the ignore index, not a value
    assert '[11, 12, 200, 255]' not in message


def test_range_checked_after_label_mapping(tmp_path):
    path = tmp_path / 'mapped.png'
    label = np.full((H, W), 11, np.uint8)
    label[0, 0] = 3
    write_label(path, label)
    results = load_label(path, label_map={11: 255})
    assert set(np.unique(results['gt_seg_map'])) == {3, 255}
    # The transform's own settings win over the data info's.
    with pytest.raises(ValueError, match=r'values \[3\]'):
        load_label(path, transform_args=dict(num_classes=3, ignore_index=11))


def test_unknown_num_classes_is_an_error(tmp_path):
    path = tmp_path / 'label.png'
    write_label(path, np.zeros((H, W), np.uint8))
    with pytest.raises(ValueError, match='number of classes is unknown'):
        load_label(path, num_classes=None)
    results = load_label(
        path, num_classes=None, transform_args=dict(num_classes=2)
    )
    assert results['gt_seg_map'].shape == (H, W)


def test_colour_label_is_rejected(tmp_path):
    path = tmp_path / 'colour.png'
    assert cv2.imwrite(str(path), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match='single-channel') as err:
        load_label(path)
    assert str(path) in str(err.value)


def test_16_bit_label_values_are_not_wrapped(tmp_path):
    path = tmp_path / 'wide.png'
    label = np.zeros((H, W), np.uint16)
    label[0, 0] = 257  # would silently become 1 as uint8
    assert cv2.imwrite(str(path), label)
    with pytest.raises(ValueError, match='do not fit uint8'):
        load_label(path, transform_args=dict(imdecode_backend='cv2'))


def test_label_size_must_match_image(tmp_path):
    path = tmp_path / 'small.png'
    write_label(path, np.zeros((H // 2, W), np.uint8))
    with pytest.raises(ValueError, match='is 16x48 but its image') as err:
        load_label(path, ori_shape=(H, W), img_path='img.png')
    assert str(path) in str(err.value) and 'img.png' in str(err.value)


@pytest.mark.parametrize(
    'args',
    [dict(num_classes=0), dict(num_classes=True), dict(ignore_index=-1)],
)
def test_invalid_arguments(args):
    with pytest.raises(ValueError, match=next(iter(args))):
        TRANSFORMS.build(dict(type='LoadCheckedAnnotations', **args))


def test_repr_prints_arguments():
    t = TRANSFORMS.build(
        dict(type='LoadCheckedAnnotations', num_classes=11, ignore_index=250)
    )
    assert 'num_classes=11' in repr(t) and 'ignore_index=250' in repr(t)
    t = TRANSFORMS.build(dict(type='LoadCheckedImageFromFile'))
    assert repr(t).startswith('LoadCheckedImageFromFile(')
