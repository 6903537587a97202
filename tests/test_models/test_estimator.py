"""DistortionEstimator: the gear of an input from its pixels alone.

One estimator is trained per module on 8 procedural 64x80 images per gear
of the demo space (about a second) and checked on held-out images.
"""

import importlib.util
import os

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import (
    get_state_dict,
    load_checkpoint,
    save_checkpoint,
    weights_to_cpu,
)
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.apis.estimator import (
    clean_images,
    evaluate_estimator,
    raw_image_dataset,
    train_estimator,
    within_one_level,
)
from mmseg_gearnn.datasets import ProceduralStreetDataset
from mmseg_gearnn.distortions import RandomDistortion, build_space, distort
from mmseg_gearnn.models import DistortionEstimator
from mmseg_gearnn.models.estimators import (
    FEATURE_NAMES,
    denormalize_inputs,
    image_features,
)

SIZE = (64, 80)
TINY_SPACE = dict(distortions=dict(jpeg=[10], gaussian_noise=[30]))


@pytest.fixture(scope='module')
def space(repo_root):
    cfg = Config.fromfile(
        str(repo_root / 'configs' / '_base_' / 'distortions' / 'demo.py')
    )
    return build_space(cfg.distortion_space)


@pytest.fixture(scope='module')
def estimator(space):
    train = ProceduralStreetDataset(num_samples=8, img_size=SIZE, seed=0)
    return train_estimator(space, train, num_per_gear=8, seed=0)


@pytest.fixture(scope='module')
def held_out():
    """Ten clean images the estimator never saw (another dataset seed)."""
    dataset = ProceduralStreetDataset(num_samples=10, img_size=SIZE, seed=1)
    return [dataset[i]['img'] for i in range(10)]


def _distorted(space, images, gear):
    _, dtype, level = space.gears()[gear]
    return [
        distort(img, dtype, level, np.random.default_rng((7, i)))
        for i, img in enumerate(images)
    ]


def test_registered_and_needs_training(space, held_out):
    est = MODELS.build(dict(type='DistortionEstimator', space=space))
    assert isinstance(est, DistortionEstimator)
    assert est.num_gears == space.num_gears == 13
    with pytest.raises(RuntimeError, match='not trained'):
        est.predict_gears(held_out[:1])


def test_features_respond_to_each_distortion(held_out):
    img = held_out[0]
    clean = image_features(img)
    assert clean.shape == (len(FEATURE_NAMES),)
    assert clean.dtype == np.float32 and np.isfinite(clean).all()

    def feature(name, distorted):
        return image_features(distorted)[FEATURE_NAMES.index(name)]

    def at(name):
        return clean[FEATURE_NAMES.index(name)]

    rng = np.random.default_rng(0)
    noisy = distort(img, 'gaussian_noise', 30, rng)
    assert feature('log_noise_block_p10', noisy) > at('log_noise_block_p10')
    assert feature('blockiness_h', distort(img, 'jpeg', 5)) > at(
        'blockiness_h'
    )
    assert feature('log_hf_loss_2', distort(img, 'resolution', 0.25)) < at(
        'log_hf_loss_2'
    )
    assert feature('log_lum_mean', distort(img, 'brightness', 0.1)) < at(
        'log_lum_mean'
    )


def test_separates_clean_from_harshest_level(space, estimator, held_out):
    clean = estimator.predict_proba(held_out)
    n = len(held_out)
    for dtype in space.types:
        gear = space.gear_id(dtype, space.levels(dtype)[-1])
        harsh = estimator.predict_proba(_distorted(space, held_out, gear))
        # The two-way decision clean vs harshest level of this type.
        right = int((clean[:, 0] > clean[:, gear]).sum()) + int(
            (harsh[:, gear] > harsh[:, 0]).sum()
        )
        assert right / (2 * n) >= 0.9, (dtype, clean, harsh)
        # And among all gears, the harshest images get this type.
        types = [space.level_of(g)[0] for g in harsh.argmax(1).tolist()]
        assert types.count(dtype) / n >= 0.9, (dtype, types)


def test_held_out_accuracy_report(space, estimator):
    val = ProceduralStreetDataset(num_samples=4, img_size=SIZE, seed=1)
    report = evaluate_estimator(estimator, val, num_images=4, seed=1)
    assert set(report['per_type']) == {'clean', *space.types}
    assert report['exact'] >= 0.8
    for r in report['per_type'].values():
        assert r['within_one'] >= r['exact']
        assert r['count'] in (4, 12)
    assert np.asarray(report['confusion']).sum() == 4 * space.num_gears


def test_within_one_level(space):
    jpeg = [space.gear_id('jpeg', lv) for lv in space.levels('jpeg')]
    bright = space.gear_id('brightness', space.levels('brightness')[0])
    assert within_one_level(space, 0, jpeg[0])
    assert within_one_level(space, jpeg[0], 0)
    assert not within_one_level(space, 0, jpeg[1])
    assert within_one_level(space, jpeg[1], jpeg[2])
    assert not within_one_level(space, jpeg[0], jpeg[2])
    assert not within_one_level(space, bright, jpeg[0])


def test_input_forms_agree(space, estimator, held_out):
    images = held_out[:3] + _distorted(space, held_out[:3], 6)
    gears = estimator.predict_gears(images)
    assert gears.dtype == torch.int64 and gears.shape == (6,)
    bgr = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    assert torch.equal(estimator.predict_gears(np.stack(images)), gears)
    assert torch.equal(estimator.predict_gears(bgr), gears)
    assert torch.equal(estimator.predict_gears(bgr.float()), gears)
    assert torch.equal(estimator.predict_gears(list(bgr.float())), gears)
    rgb = bgr.flip(1).float()
    assert torch.equal(
        estimator.predict_gears(rgb, channel_order='rgb'), gears
    )
    assert torch.equal(estimator.predict_gears(images[0]), gears[:1])
    proba = estimator.predict_proba(images)
    assert proba.shape == (6, space.num_gears)
    assert torch.allclose(proba.sum(1), torch.ones(6))
    records = estimator.predict_distortions(images)
    assert [r['gear'] for r in records] == gears.tolist()
    for r in records:
        assert space.record(r['type'], r['level']) == r


def test_normalised_inputs_of_a_segmentor(space, estimator, held_out):
    """Inputs as a segmentor sees them: BGR->RGB, normalised, padded."""
    preprocessor = MODELS.build(
        dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            test_cfg=dict(size=(72, 88)),
        )
    )
    images = held_out[:2] + _distorted(space, held_out[:2], 9)
    data = dict(
        inputs=[torch.from_numpy(img).permute(2, 0, 1) for img in images],
        data_samples=[
            SegDataSample(metainfo=dict(img_shape=SIZE)) for _ in images
        ],
    )
    data = preprocessor(data)
    inputs = data['inputs']
    assert inputs.shape[-2:] == (72, 88)  # padded
    raw = denormalize_inputs(
        inputs,
        preprocessor.mean,
        preprocessor.std,
        [s.metainfo['img_shape'] for s in data['data_samples']],
    )
    assert torch.equal(
        estimator.predict_gears(raw, channel_order='rgb'),
        estimator.predict_gears(images),
    )
    with pytest.raises(ValueError, match='de-normalise'):
        estimator.predict_gears(inputs, channel_order='rgb')


def test_save_load_roundtrip(space, estimator, held_out, tmp_path):
    path = tmp_path / 'estimator.pth'
    estimator.save(path)
    assert os.listdir(tmp_path) == ['estimator.pth']  # no temp file left
    payload = torch.load(path, weights_only=True)
    assert payload['type'] == 'DistortionEstimator'
    loaded = DistortionEstimator.load(path, space=space)
    images = held_out + _distorted(space, held_out, 12)
    expected = estimator.predict_proba(images)
    assert torch.equal(loaded.predict_proba(images), expected)

    # A plain state dict also travels, with weights-only loading.
    torch.save(estimator.state_dict(), tmp_path / 'state.pth')
    state = torch.load(tmp_path / 'state.pth', weights_only=True)
    fresh = DistortionEstimator(space)
    fresh.load_state_dict(state)
    assert fresh.is_fitted
    assert torch.equal(fresh.predict_proba(images), expected)


def test_travels_inside_an_mmengine_checkpoint(space, estimator, tmp_path):
    """As a submodule (e.g. of a segmentor) through mmengine's checkpoint
    saving and its (weights-only, see mmseg_gearnn.utils) loading."""

    def parent(s):
        module = torch.nn.Module()
        module.estimator = DistortionEstimator(s)
        return module

    source = parent(space)
    source.estimator.load_state_dict(estimator.state_dict())
    path = str(tmp_path / 'model.pth')
    save_checkpoint(
        dict(meta={}, state_dict=weights_to_cpu(get_state_dict(source))), path
    )
    target = parent(space)
    load_checkpoint(target, path)
    assert target.estimator.is_fitted
    other = dict(distortions=dict(jpeg=[10]))
    with pytest.raises(ValueError, match='another distortion space'):
        load_checkpoint(parent(other), path)


def test_other_space_raises(space, estimator, tmp_path):
    # Same number of gears, one level differs: only the check can tell.
    other = dict(space.to_dict())
    other['distortions'] = dict(other['distortions'], jpeg=[30, 15, 6])
    fresh = DistortionEstimator(other)
    with pytest.raises(ValueError, match='another distortion space'):
        fresh.load_state_dict(estimator.state_dict())
    assert not fresh.is_fitted  # checked before anything was copied in
    with pytest.raises(ValueError, match='another distortion space'):
        estimator.check_space(other)
    estimator.check_space(dict(space.to_dict(), snap='nearest'))  # same table
    reordered = dict(reversed(list(space.distortions.items())))
    with pytest.raises(ValueError, match='another distortion space'):
        estimator.check_space(dict(distortions=reordered))
    path = tmp_path / 'estimator.pth'
    estimator.save(path)
    with pytest.raises(ValueError, match='another distortion space'):
        DistortionEstimator.load(path, space=other)
    with pytest.raises(ValueError, match='hidden_channels'):
        DistortionEstimator(space, hidden_channels=16).load_state_dict(
            estimator.state_dict()
        )


@pytest.mark.faults
@pytest.mark.parametrize(
    'images, error, match',
    [
        (np.zeros((32, 32, 3), np.float32), TypeError, 'uint8'),
        (np.zeros((32, 32), np.uint8), ValueError, r'got shape \(32, 32\)'),
        (np.zeros((32, 32, 4), np.uint8), ValueError, r'\(H, W, 3\)'),
        (np.zeros((8, 8, 3), np.uint8), ValueError, 'at least 16x16'),
        (torch.zeros(2, 1, 32, 32), ValueError, r'\(3, H, W\)'),
        (torch.zeros(3, 8, 32), ValueError, 'at least 16x16'),
        (torch.zeros(1, 1, 3, 32, 32), ValueError, r'\(N, 3, H, W\)'),
        (torch.full((1, 3, 32, 32), -2.0), ValueError, 'de-normalise'),
        (torch.full((1, 3, 32, 32), float('nan')), ValueError, 'finite'),
        (torch.zeros(1, 3, 32, 32, dtype=torch.int32), TypeError, 'int32'),
        ('image.png', TypeError, 'str'),
        ([np.zeros((32, 32, 3), np.uint8), None], TypeError, 'image 1'),
    ],
)
def test_bad_inputs_raise(estimator, images, error, match):
    with pytest.raises(error, match=match):
        estimator.predict_gears(images)


@pytest.mark.faults
def test_bad_arguments_raise(space, estimator, held_out, tmp_path):
    with pytest.raises(ValueError, match='channel_order'):
        estimator.predict_gears(held_out[:1], channel_order='hsv')
    with pytest.raises(ValueError, match='max_side'):
        DistortionEstimator(space, max_side=8)
    with pytest.raises(FileNotFoundError, match='not found'):
        DistortionEstimator.load(tmp_path / 'missing.pth')
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='junk.pth'):
        DistortionEstimator.load(tmp_path / 'junk.pth')
    torch.save(dict(state_dict=dict(w=torch.zeros(1))), tmp_path / 'x.pth')
    with pytest.raises(ValueError, match='no DistortionEstimator state'):
        DistortionEstimator.load(tmp_path / 'x.pth')
    with pytest.raises(ValueError, match='asked for 5'):
        clean_images(held_out[:2], 5)


def test_training_is_deterministic(held_out):
    def fit(seed):
        return train_estimator(
            TINY_SPACE,
            held_out[:3],
            3,
            seed=seed,
            hidden_channels=8,
            max_iter=30,
        ).state_dict()

    first, second, other = fit(0), fit(0), fit(1)
    assert all(
        torch.equal(first[k], second[k]) for k in first if k != '_extra_state'
    )
    assert not torch.equal(
        first['classifier.0.weight'], other['classifier.0.weight']
    )


def test_raw_image_dataset_rewrites_pipelines():
    distorting = [
        dict(type='RandomFlip', prob=0.5),
        dict(type='RandomDistortion', space=TINY_SPACE, clean_prob=0.0),
        dict(type='PackSegInputs'),
    ]
    procedural = dict(
        type='ProceduralStreetDataset',
        num_samples=3,
        img_size=(32, 32),
        pipeline=distorting,
    )
    assert raw_image_dataset(procedural)['pipeline'] == []
    assert procedural['pipeline'] == distorting  # input untouched
    sweep = dict(type='DistortionSweepDataset', dataset=procedural)
    assert raw_image_dataset(sweep)['type'] == 'ProceduralStreetDataset'
    camvid = dict(type='CamVidDataset', data_root='x', pipeline=distorting)
    concat = raw_image_dataset(
        dict(type='ConcatDataset', datasets=[procedural, camvid])
    )
    assert [d['pipeline'] for d in concat['datasets']] == [
        [],
        [dict(type='LoadCheckedImageFromFile')],
    ]

    # A fixed resize before the distortion stays (the images the distortion
    # sees at test time); resizes after it and random ones go.
    resize = dict(type='Resize', scale=(320, 240), keep_ratio=True)
    test_pipeline = [
        dict(type='LoadCheckedImageFromFile'),
        resize,
        dict(type='RandomResize', scale=(64, 64), ratio_range=(0.5, 2.0)),
        dict(type='RequestedDistortion', space=TINY_SPACE),
        dict(type='Resize', scale=(16, 16)),
        dict(type='PackSegInputs'),
    ]
    camvid_test = dict(
        type='CamVidDataset', data_root='x', pipeline=test_pipeline
    )
    assert raw_image_dataset(camvid_test)['pipeline'] == [
        dict(type='LoadCheckedImageFromFile'),
        resize,
    ]

    # A config is rewritten; an already built distorting dataset refuses.
    images = clean_images(procedural, 2, seed=0)
    assert all(
        img.dtype == np.uint8 and img.shape == (32, 32, 3) for img in images
    )
    built = ProceduralStreetDataset(
        num_samples=3,
        img_size=(32, 32),
        pipeline=[RandomDistortion(TINY_SPACE, clean_prob=0.0)],
    )
    with pytest.raises(ValueError, match='already distorted'):
        clean_images(built, 2)


def test_train_estimator_tool(repo_root, tmp_path):
    config = tmp_path / 'tiny.py'
    config.write_text(
        f'distortion_space = dict(distortions={TINY_SPACE["distortions"]})\n'
        'train_dataloader = dict(dataset=dict(type="ProceduralStreetDataset",'
        ' num_samples=4, img_size=(32, 32), seed=0,'
        ' pipeline=[dict(type="RandomDistortion", space=distortion_space)]))\n'
        'val_dataloader = dict(dataset=dict(type="ProceduralStreetDataset",'
        ' num_samples=2, img_size=(32, 32), seed=1, pipeline=[]))\n'
    )
    spec = importlib.util.spec_from_file_location(
        'train_estimator_tool', repo_root / 'tools' / 'train_estimator.py'
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / 'out' / 'estimator.pth'
    tool.main(
        [
            str(config),
            '--out',
            str(out),
            '--num-images',
            '4',
            '--val-num-images',
            '2',
            '--hidden-channels',
            '8',
        ]
    )
    estimator = DistortionEstimator.load(out, space=TINY_SPACE)
    assert estimator.hidden_channels == 8
    assert (tmp_path / 'out' / 'estimator.json').is_file()
