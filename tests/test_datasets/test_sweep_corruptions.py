import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

import mmseg_gearnn  # noqa: F401  (registers the datasets)
from mmseg_gearnn.distortions import distort

SPACE = dict(distortions=dict(ic_gaussian_noise=[1, 4], ic_fog=[2]))
META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'distortion')


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def sweep(**kwargs):
    dataset = dict(
        type='ProceduralStreetDataset',
        num_samples=2,
        img_size=(32, 40),  # the corruptions need 32x32 at least
        seed=3,
        pipeline=[
            dict(type='RequestedDistortion', space=SPACE),
            dict(type='PackSegInputs', meta_keys=META_KEYS),
        ],
    )
    return DATASETS.build(
        dict(type='DistortionSweepDataset', dataset=dataset, **kwargs)
    )


def image(item):
    return item['inputs'].permute(1, 2, 0).numpy()


def test_seeded_sweep_of_corruptions():
    pytest.importorskip('imagecorruptions')
    ds = sweep(seed=7)
    assert len(ds) == 2 * 4
    clean = [ds.dataset.get_data_info(i)['img'] for i in range(2)]
    seeds = [ds.get_data_info(i)['distortion_request']['seed'] for i in (0, 1)]
    assert seeds[0] != seeds[1]
    for i in range(len(ds)):
        sample, gear, dtype, level = ds.distortion_of(i)
        request = ds.get_data_info(i)['distortion_request']
        assert request['seed'] == seeds[sample]  # one seed per sample
        if gear == 0:
            continue
        expected = distort(
            clean[sample], dtype, level, np.random.default_rng(seeds[sample])
        )
        item = ds[i]
        assert item['data_samples'].metainfo['distortion'] == dict(
            type=dtype, level=level, gear=gear
        )
        np.testing.assert_array_equal(image(item), expected)
    # The same items in another order, after other random draws: the same.
    np.random.seed(123)
    for i in (5, 3):
        np.testing.assert_array_equal(image(ds[i]), image(sweep(seed=7)[i]))
    assert 'seed=7' in repr(ds)


def test_unseeded_sweep_requests_no_seed():
    ds = sweep()
    assert 'seed' not in ds.get_data_info(3)['distortion_request']


@pytest.mark.parametrize('seed', [-1, 2**32, 1.5])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match='seed must be an integer'):
        sweep(seed=seed)
