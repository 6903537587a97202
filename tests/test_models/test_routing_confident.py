"""ConfidentGearRouter: the estimated gear only when the estimator is
confident, else the base; metadata first, and clean frames on a clean
gear."""

import math

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from toys import tiny_segmentor

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.apis.estimator import train_estimator
from mmseg_gearnn.datasets import ProceduralStreetDataset
from mmseg_gearnn.distortions import build_space, distort
from mmseg_gearnn.models.routing import ROUTING_POLICIES, ConfidentGearRouter

# brightness 1.0 is the identity: a gear trained on clean frames.
SPACE = dict(distortions=dict(jpeg=[10], brightness=[0.2, 1.0]))
SIZE = (64, 80)
SEGMENTOR = tiny_segmentor(SIZE, num_classes=8)


@pytest.fixture(scope='module')
def estimator_file(tmp_path_factory):
    train = ProceduralStreetDataset(num_samples=8, img_size=SIZE, seed=0)
    estimator = train_estimator(SPACE, train, num_per_gear=8, seed=0)
    path = tmp_path_factory.mktemp('estimator') / 'estimator.pth'
    estimator.save(str(path))
    return str(path)


def build(**router):
    init_default_scope('mmseg')
    router.setdefault('type', 'ConfidentGearRouter')
    return MODELS.build(
        ConfigDict(
            type='GearNNSegmentor',
            segmentor=SEGMENTOR,
            space=SPACE,
            adaptor='bn',
            router=router,
        )
    ).eval()


def frame(kind):
    """A held-out scene: ``'dark'`` (brightness 0.2, a gear of the table),
    ``'noisy'`` (gaussian noise, which no gear was trained on) or
    ``'clean'``."""
    img = ProceduralStreetDataset(num_samples=1, img_size=SIZE, seed=7)[0][
        'img'
    ]
    if kind == 'dark':
        img = distort(img, 'brightness', 0.2)
    elif kind == 'noisy':
        img = distort(img, 'gaussian_noise', 60.0, np.random.default_rng(0))
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def route(model, kind='dark', metadata=None):
    """(gear, source, confidence) of one frame."""
    sample = SegDataSample(
        metainfo=dict(img_shape=SIZE, ori_shape=SIZE, pad_shape=SIZE)
    )
    if metadata is not None:
        sample.set_metainfo(dict(distortion=metadata))
    data = model.data_preprocessor(
        dict(inputs=[frame(kind)], data_samples=[sample]), False
    )
    gears = model.route(data['inputs'], data['data_samples'])
    info = data['data_samples'][0].metainfo
    return gears[0], info['gear_source'], info['gear_confidence']


def test_unlike_any_gear_goes_to_the_base(estimator_file):
    space = build_space(SPACE)
    dark_gear = space.gear_id('brightness', 0.2)
    # Without a threshold the estimator names a gear for every frame, the
    # noisy one too (no gear was trained on noise).
    always = build(estimator=estimator_file, threshold=0.0)
    gear, source, dark_p = route(always, 'dark')
    assert (gear, source) == (dark_gear, 'estimate')
    noisy_gear, source, noisy_p = route(always, 'noisy')
    assert source == 'estimate' and noisy_gear != 0
    # The estimator is surer of the trained distortion than of the noise.
    assert noisy_p < dark_p
    threshold = (noisy_p + dark_p) / 2
    confident = build(estimator=estimator_file, threshold=threshold)
    # A clear case keeps its gear; a frame unlike any gear falls back to
    # the base (gear 0, no gear switched in), its confidence recorded.
    assert route(confident, 'dark') == (dark_gear, 'estimate', dark_p)
    assert route(confident, 'noisy') == (0, 'fallback', noisy_p)


def test_metadata_first_and_clean_gear(estimator_file):
    space = build_space(SPACE)
    jpeg_gear = space.gear_id('jpeg', 10)
    clean_gear = space.gear_id('brightness', 1.0)
    model = build(
        estimator=estimator_file, threshold=1.0, clean_gear=clean_gear
    )
    jpeg = dict(type='jpeg', level=10)
    # Metadata of a level of the table decides, whatever the estimate.
    assert route(model, 'noisy', jpeg) == (jpeg_gear, 'metadata', None)
    # A clean frame runs on the clean gear, not on the base.
    assert route(model, 'dark', dict(type='clean')) == (
        clean_gear,
        'metadata',
        None,
    )
    # Metadata of a type the table lacks is no error: the estimate
    # decides, here below the threshold of 1.0, so the base.
    unknown = dict(type='ic_speckle_noise', level=3)
    gear, source, confidence = route(model, 'noisy', unknown)
    assert (gear, source) == (0, 'fallback') and confidence < 1.0


def test_sub_table_estimator_and_no_estimator(tmp_path):
    """An estimator of the table less its clean gear's identity level (whose
    frames look clean): its gears map to the table's, and a clean estimate
    runs on the clean gear. Without an estimator, a sample without usable
    metadata runs on the base."""
    space = build_space(SPACE)
    clean_gear = space.gear_id('brightness', 1.0)
    sub = dict(distortions=dict(jpeg=[10], brightness=[0.2]))
    train = ProceduralStreetDataset(num_samples=8, img_size=SIZE, seed=0)
    path = str(tmp_path / 'sub.pth')
    train_estimator(sub, train, num_per_gear=8, seed=0).save(path)
    model = build(estimator=path, threshold=0.0, clean_gear=clean_gear)
    dark_gear = space.gear_id('brightness', 0.2)
    assert route(model, 'dark')[:2] == (dark_gear, 'estimate')
    clean = model.router.estimate_probabilities(
        frame('clean')[None].float(), None, None
    )
    assert clean.shape == (1, space.num_gears)
    assert float(clean[0, clean_gear]) == 0.0  # the sub-table has no such gear
    assert int(clean.argmax()) == 0
    assert route(model, 'clean')[:2] == (clean_gear, 'estimate')
    blind = build(threshold=0.5)
    assert route(blind, 'dark') == (0, 'fallback', None)
    jpeg = dict(type='jpeg', level=10)
    assert route(blind, 'dark', jpeg)[:2] == (
        space.gear_id('jpeg', 10),
        'metadata',
    )


def test_policy_is_registered(estimator_file):
    assert ROUTING_POLICIES['confident'] == 'ConfidentGearRouter'
    init_default_scope('mmseg')
    model = MODELS.build(
        ConfigDict(
            type='GearNNSegmentor',
            segmentor=SEGMENTOR,
            space=SPACE,
            adaptor='bn',
            routing='confident',
            estimator=estimator_file,
        )
    )
    assert isinstance(model.router, ConfidentGearRouter)
    assert model.router.threshold == 0.5


@pytest.mark.faults
@pytest.mark.parametrize(
    'threshold', [-0.1, 1.5, math.nan, 'high', True, None]
)
def test_bad_threshold_is_one_clear_error(estimator_file, threshold):
    with pytest.raises(ValueError, match='threshold must be a probability'):
        ConfidentGearRouter(
            SPACE, threshold=threshold, estimator=estimator_file
        )


@pytest.mark.faults
def test_bad_clean_gear_and_missing_estimator(estimator_file):
    with pytest.raises(ValueError, match='gear'):
        ConfidentGearRouter(SPACE, clean_gear=9, estimator=estimator_file)
    with pytest.raises(ValueError, match='clean_gear must be a gear id'):
        ConfidentGearRouter(SPACE, clean_gear=1.0, estimator=estimator_file)
    with pytest.raises(ValueError, match='does not list'):
        ConfidentGearRouter(
            dict(distortions=dict(jpeg=[10])), estimator=estimator_file
        )
