"""DistortionSweepDataset over compound distortions and an in-between
measurement space whose records carry no gear."""

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

import mmseg_gearnn  # noqa: F401  (registers the datasets)
from mmseg_gearnn.distortions import distort

# Levels between those of a model's table (e.g. jpeg [40, 10]).
MEASURE = dict(distortions=dict(jpeg=[25], brightness=[0.35]))
META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'distortion')


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def sweep(**kwargs):
    pipeline = [
        dict(type='RequestedDistortion', space=MEASURE, record_gear=False),
        dict(type='PackSegInputs', meta_keys=META_KEYS),
    ]
    dataset = dict(
        type='ProceduralStreetDataset',
        num_samples=2,
        img_size=(24, 32),
        seed=3,
        pipeline=pipeline,
    )
    return DATASETS.build(
        dict(type='DistortionSweepDataset', dataset=dataset, **kwargs)
    )


def test_levels_then_compounds():
    ds = sweep(
        include_clean=False,
        compounds=[[('brightness', 0.1), ('jpeg', 5)]],
    )
    assert len(ds) == 2 * 3
    expected = [
        dict(type='jpeg', level=25, gear=None),
        dict(type='brightness', level=0.35, gear=None),
        dict(
            type='brightness+jpeg',
            level='0.1+5',
            gear=None,
            components=[
                dict(type='brightness', level=0.1),
                dict(type='jpeg', level=5),
            ],
        ),
    ]
    clean = [ds.dataset.get_data_info(i)['img'] for i in range(2)]
    for i in range(len(ds)):
        item = ds[i]
        assert item['data_samples'].metainfo['distortion'] == expected[i // 2]
    assert ds.distortion_of(5) == (1, None, 'brightness+jpeg', '0.1+5')
    # The compound items are both kernels in order.
    img = ds[4]['inputs'].permute(1, 2, 0).numpy()
    want = distort(distort(clean[0], 'brightness', 0.1), 'jpeg', 5)
    np.testing.assert_array_equal(img, want)


def test_compounds_only():
    ds = sweep(
        include_clean=True,
        include_levels=False,
        compounds=[[('jpeg', 5), ('brightness', 0.1)]],
    )
    assert [e[:2] for e in ds.entries] == [
        (0, 'clean'),
        (None, 'jpeg+brightness'),
    ]
    assert ds[3]['data_samples'].metainfo['distortion']['level'] == '5+0.1'
    with pytest.raises(ValueError, match='the sweep is empty'):
        sweep(include_clean=False, include_levels=False)
