"""Median frequency class weights from a dataset's label maps."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
from camvid_layout import make_tiny_camvid
from mmengine.registry import init_default_scope

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.datasets import label_pixel_counts, median_frequency_weights

CAMVID_CONFIG = (
    'configs/gearnn/deeplabv3plus_efficientnet-lite0_1xb8-1k_camvid-240x320.py'
)


@pytest.fixture
def tiny_camvid(tmp_path):
    init_default_scope('mmseg')
    return make_tiny_camvid(tmp_path)


def train_cfg(root):
    return dict(
        type='CamVidDataset',
        data_root=str(root),
        data_prefix=dict(img_path='train', seg_map_path='trainannot'),
    )


def run_tool(root, repo_root):
    """``tools/class_weights.py`` on the CamVid config and ``root``."""
    return subprocess.run(
        [
            sys.executable,
            'tools/class_weights.py',
            CAMVID_CONFIG,
            '--data-root',
            str(root),
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )


def test_counts_match_the_label_files(tiny_camvid):
    root = tiny_camvid['root']
    counts, image_pixels = label_pixel_counts(train_cfg(root), 11)
    expected = np.zeros(11, dtype=np.int64)
    expected_image = np.zeros(11, dtype=np.int64)
    for stem in tiny_camvid['stems']['train']:
        raw = cv2.imread(str(root / 'trainannot' / f'{stem}.png'), 0)
        per_class = np.bincount(raw[raw != 11], minlength=11)
        expected += per_class
        expected_image += (per_class > 0) * raw.size
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(image_pixels, expected_image)
    # The unlabelled band (value 11) is not counted as any class.
    h, w = tiny_camvid['shape']
    assert counts.sum() == 3 * (h - 4) * w


def test_median_frequency_weights():
    # Frequencies 0.5, 0.1, 0.25: median 0.25.
    weights = median_frequency_weights([50, 10, 25], [100, 100, 100])
    np.testing.assert_allclose(weights, [0.5, 2.5, 1.0])
    soft = median_frequency_weights([50, 10, 25], [100, 100, 100], power=0.5)
    np.testing.assert_allclose(soft, np.sqrt([0.5, 2.5, 1.0]))
    # A class counts against the images that hold it, not all images.
    np.testing.assert_allclose(
        median_frequency_weights([50, 10, 25], [100, 20, 100]),
        [1.0, 1.0, 2.0],
    )


def test_absent_class_and_bad_power_are_named():
    with pytest.raises(ValueError, match=r"\['pole'\]"):
        median_frequency_weights([5, 0], [10, 0], class_names=('sky', 'pole'))
    with pytest.raises(ValueError, match='power'):
        median_frequency_weights([5, 5], [10, 10], power=-1)


def test_tool_prints_the_weights(tiny_camvid, repo_root):
    root = tiny_camvid['root']
    proc = run_tool(root, repo_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    counts, image_pixels = label_pixel_counts(train_cfg(root), 11)
    weights = median_frequency_weights(counts, image_pixels)
    assert f'class_weight = {[round(w, 4) for w in weights]}' in out


def test_tool_names_a_class_missing_from_the_labels(tiny_camvid, repo_root):
    root = tiny_camvid['root']
    for path in (root / 'trainannot').iterdir():
        label = cv2.imread(str(path), 0)
        label[label == 10] = 9  # no bicyclist left
        assert cv2.imwrite(str(path), label)
    proc = run_tool(root, repo_root)
    assert proc.returncode != 0
    assert "no labelled pixel of class(es) ['bicyclist']" in proc.stderr
