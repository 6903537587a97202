import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

import mmseg_gearnn  # noqa: F401  (registers the datasets)
from mmseg_gearnn.distortions import distort


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


SPACE = dict(distortions=dict(jpeg=[40, 10], brightness=[0.5]))
META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'distortion')
PIPELINE = [
    dict(type='RequestedDistortion', space=SPACE),
    dict(type='PackSegInputs', meta_keys=META_KEYS),
]


def streets(pipeline=PIPELINE, num_samples=2):
    return dict(
        type='ProceduralStreetDataset',
        num_samples=num_samples,
        img_size=(24, 32),
        seed=3,
        pipeline=pipeline,
    )


def sweep(**kwargs):
    kwargs.setdefault('dataset', streets())
    return DATASETS.build(dict(type='DistortionSweepDataset', **kwargs))


def test_length_and_order():
    ds = sweep(space=SPACE)
    assert len(ds) == 2 * 4
    expected = [
        dict(type='clean', level=None, gear=0),
        dict(type='jpeg', level=40, gear=1),
        dict(type='jpeg', level=10, gear=2),
        dict(type='brightness', level=0.5, gear=3),
    ]
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        assert sample.metainfo['distortion'] == expected[i // 2]
        assert sample.metainfo['img_path'] == f'procedural/{i % 2:06d}'
        assert ds.distortion_of(i)[:2] == (i % 2, i // 2)
    assert ds.distortion_of(-1) == (1, 3, 'brightness', 0.5)
    with pytest.raises(IndexError, match='outside a sweep of 8'):
        ds.distortion_of(8)


def test_items_are_the_distorted_samples():
    ds = sweep(space=SPACE)
    clean = [ds.dataset.get_data_info(i)['img'] for i in range(2)]
    for i, (kind, level) in {
        0: ('clean', None),
        3: ('jpeg', 40),
        4: ('jpeg', 10),
        7: ('brightness', 0.5),
    }.items():
        img = clean[i % 2]
        if kind != 'clean':
            img = distort(img, kind, level)
        inputs = ds[i]['inputs'].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(inputs, img)
    assert ds.get_data_info(4)['distortion_request'] == dict(
        type='jpeg', level=10
    )


def test_without_clean_and_space_from_pipeline():
    ds = sweep(include_clean=False)
    assert ds.space.to_dict()['distortions'] == SPACE['distortions']
    assert len(ds) == 2 * 3
    assert ds[0]['data_samples'].metainfo['distortion']['gear'] == 1


def test_metainfo_of_wrapped_dataset():
    ds = sweep(dataset=streets(), space=SPACE)
    assert ds.metainfo == ds.dataset.metainfo
    assert ds.metainfo['classes'][0] == 'sky'


def test_lazy_init():
    ds = sweep(lazy_init=True)
    assert not ds._fully_initialized
    assert len(ds) == 8


@pytest.mark.faults
def test_pipeline_without_requested_distortion_is_refused():
    pipeline = [dict(type='PackSegInputs', meta_keys=META_KEYS)]
    with pytest.raises(ValueError, match='needs a RequestedDistortion') as err:
        sweep(dataset=streets(pipeline=pipeline), space=SPACE)
    assert 'PackSegInputs' in str(err.value)


@pytest.mark.faults
def test_space_disagreeing_with_pipeline_is_refused():
    other = dict(distortions=dict(jpeg=[40, 20]))
    with pytest.raises(ValueError, match=r"\(jpeg, 20\).*can't apply"):
        sweep(space=other)
    reordered = dict(distortions=dict(brightness=[0.5], jpeg=[40, 10]))
    with pytest.raises(ValueError, match='gear 1 in the sweep but gear 3'):
        sweep(space=reordered)


@pytest.mark.faults
def test_dataset_of_wrong_type():
    with pytest.raises(TypeError, match='dataset must be'):
        sweep(dataset=[1, 2])
