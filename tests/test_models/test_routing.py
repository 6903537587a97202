"""GearNNSegmentor routing: metadata, estimate, or metadata checked against
the estimate of a DistortionEstimator."""

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
from mmseg_gearnn.distortions import build_space, compound_record, distort
from mmseg_gearnn.distortions.space import parse_distortion_record
from mmseg_gearnn.models.routing import (
    CheckedGearRouter,
    DefaultGearRouter,
    GearRouter,
    MetadataGearRouter,
)

SPACE = dict(distortions=dict(jpeg=[10], brightness=[0.2]))
SIZE = (64, 80)
SEGMENTOR = tiny_segmentor(SIZE, num_classes=8)


@pytest.fixture(scope='module')
def estimator_file(tmp_path_factory):
    train = ProceduralStreetDataset(num_samples=8, img_size=SIZE, seed=0)
    estimator = train_estimator(SPACE, train, num_per_gear=8, seed=0)
    path = tmp_path_factory.mktemp('estimator') / 'estimator.pth'
    estimator.save(str(path))
    return str(path)


def build(**kwargs):
    init_default_scope('mmseg')
    return MODELS.build(
        ConfigDict(
            type='GearNNSegmentor',
            segmentor=SEGMENTOR,
            space=SPACE,
            adaptor='bn',
            **kwargs,
        )
    ).eval()


def dark_frame():
    """A held-out scene at brightness 0.2, with its (optional) metadata."""
    clean = ProceduralStreetDataset(num_samples=1, img_size=SIZE, seed=7)[0][
        'img'
    ]
    dark = distort(clean, 'brightness', 0.2)
    return torch.from_numpy(np.ascontiguousarray(dark.transpose(2, 0, 1)))


def route(model, metadata=None):
    sample = SegDataSample(
        metainfo=dict(img_shape=SIZE, ori_shape=SIZE, pad_shape=SIZE)
    )
    if metadata is not None:
        sample.set_metainfo(dict(distortion=metadata))
    data = model.data_preprocessor(
        dict(inputs=[dark_frame()], data_samples=[sample]), False
    )
    gears = model.route(data['inputs'], data['data_samples'])
    return gears[0], data['data_samples'][0].metainfo['gear_source']


def test_metadata_routing(estimator_file):
    space = build_space(SPACE)
    dark_gear = space.gear_id('brightness', 0.2)
    jpeg_gear = space.gear_id('jpeg', 10)
    jpeg_meta = dict(type='jpeg', level=10, gear=jpeg_gear)
    # Metadata is trusted as it is under the default policy...
    assert route(build(), jpeg_meta) == (jpeg_gear, 'metadata')
    # ... no metadata and no estimator: the default gear.
    assert route(build(default_gear=0)) == (0, 'default')
    # ... no metadata, an estimator: its estimate.
    with_estimator = build(estimator=estimator_file)
    assert route(with_estimator) == (dark_gear, 'estimate')
    assert route(with_estimator, jpeg_meta) == (jpeg_gear, 'metadata')


def test_estimate_and_checked_routing(estimator_file):
    space = build_space(SPACE)
    dark_gear = space.gear_id('brightness', 0.2)
    wrong = dict(type='jpeg', level=10, gear=space.gear_id('jpeg', 10))
    right = dict(type='brightness', level=0.2, gear=dark_gear)
    always = build(estimator=estimator_file, routing='estimate')
    assert route(always, wrong) == (dark_gear, 'estimate')
    checked = build(estimator=estimator_file, routing='checked')
    # Contradicting metadata (another type) is overruled by the estimate.
    assert route(checked, wrong) == (dark_gear, 'estimate (metadata rejected)')
    assert route(checked, right) == (dark_gear, 'metadata')
    assert route(checked) == (dark_gear, 'estimate')


@pytest.mark.faults
def test_routing_errors(estimator_file, tmp_path):
    with pytest.raises(ValueError, match='routing must be one of'):
        build(routing='guess')
    with pytest.raises(ValueError, match="routing='checked' needs"):
        build(routing='checked')
    with pytest.raises(FileNotFoundError):
        build(estimator=str(tmp_path / 'none.pth'))
    other = train_estimator(
        dict(distortions=dict(jpeg=[10])),
        ProceduralStreetDataset(num_samples=2, img_size=SIZE, seed=0),
        num_per_gear=2,
        seed=0,
    )
    other.save(str(tmp_path / 'other.pth'))
    with pytest.raises(ValueError):
        build(estimator=str(tmp_path / 'other.pth'))


@MODELS.register_module(name='LastGearRouterOfTheTests')
class LastGearRouter(GearRouter):
    """A policy outside the plugin: every sample on the last gear."""

    def decide(self, inputs, data_samples, preprocessor):
        return [(self.space.num_gears - 1, 'last')] * inputs.shape[0]


def test_router_named_by_the_config(estimator_file):
    space = build_space(SPACE)
    jpeg_meta = dict(type='jpeg', level=10, gear=space.gear_id('jpeg', 10))
    model = build(router=dict(type='DefaultGearRouter', default_gear=2))
    assert isinstance(model.router, DefaultGearRouter)
    assert model.default_gear == 2
    assert route(model, jpeg_meta) == (2, 'default')
    # A new policy is a registered class, named like the plugin's own.
    assert route(build(router=dict(type='LastGearRouterOfTheTests'))) == (
        space.num_gears - 1,
        'last',
    )
    # The older keys override the config where given.
    checked = build(
        router=dict(type='MetadataGearRouter', estimator=estimator_file),
        routing='checked',
    )
    assert isinstance(checked.router, CheckedGearRouter)
    assert checked.router.estimator is not None
    assert isinstance(build().router, MetadataGearRouter)


def test_distortion_record_is_parsed_once():
    assert parse_distortion_record(None) is None
    assert parse_distortion_record({}) is None
    record = parse_distortion_record(dict(type='jpeg', level=10, gear=1))
    assert (record.type, record.level, record.gear) == ('jpeg', 10, 1)
    assert not record.is_compound
    compound = parse_distortion_record(
        compound_record([('brightness', 0.2), ('jpeg', 10)])
    )
    assert compound.is_compound
    assert [(c.type, c.level, c.gear) for c in compound.components] == [
        ('brightness', 0.2, None),
        ('jpeg', 10, None),
    ]
    with pytest.raises(ValueError, match='has a type but no level'):
        parse_distortion_record(dict(type='jpeg'))
    with pytest.raises(ValueError, match='every component needs a type'):
        parse_distortion_record(dict(components=[dict(level=3)]))
