"""The exported base config is plain mmseg: stock mmseg loads and runs the
exported gear in a process where ``mmseg_gearnn`` cannot be imported; a
segmentor that truly needs the plugin is named as such; the ONNX file
takes any batch size; the export reads a gear under the gear lock.

A pure-mmseg toy segmentor (tests/toys.py) in a GearNN config that uses the
plugin everywhere else: custom_imports, checked loaders, KeepCleanCopy,
distortion transforms and meta keys, hooks, metric, runner and dataset.
"""

import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from toys import tiny_segmentor

from mmseg_gearnn.apis.export import export_gears, gear_state_dict
from mmseg_gearnn.apis.plain_config import plain_base_config

SIZE = (32, 32)
SPACE = dict(distortions=dict(jpeg=[30, 10], brightness=[0.3]))
META_KEYS = (
    'img_path',
    'seg_map_path',
    'ori_shape',
    'img_shape',
    'pad_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'reduce_zero_label',
    'distortion',
)
LEVEL = ('jpeg', 10)


def _gear_config(segmentor: dict) -> Config:
    """A GearNN config around ``segmentor`` that uses the plugin in every
    part a run uses it."""
    train_pipeline = [
        dict(type='LoadCheckedImageFromFile'),
        dict(type='LoadCheckedAnnotations', num_classes=8),
        dict(type='RandomFlip', prob=0.5),
        dict(type='KeepCleanCopy'),
        dict(type='RandomDistortion', space=SPACE),
        dict(type='PackSegInputs', meta_keys=META_KEYS + ('clean_img',)),
    ]
    test_pipeline = [
        dict(type='LoadCheckedImageFromFile', on_error='skip'),
        dict(type='LoadCheckedAnnotations'),
        dict(type='RequestedDistortion', space=SPACE),
        dict(type='PackSegInputs', meta_keys=META_KEYS + ('skipped',)),
    ]
    dataset = dict(
        type='CamVidDataset',
        data_root='data/camvid',
        data_prefix=dict(img_path='images', seg_map_path='labels'),
    )
    loader = dict(
        batch_size=1,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
    )
    return Config(
        dict(
            default_scope='mmseg',
            custom_imports=dict(
                imports=['mmseg_gearnn'], allow_failed_imports=False
            ),
            distortion_space=SPACE,
            gearnn_meta_keys=META_KEYS,
            dataset_type='CamVidDataset',
            model=dict(
                type='GearNNSegmentor',
                segmentor=segmentor,
                data_preprocessor=segmentor['data_preprocessor'],
                space=SPACE,
                adaptor='bn',
            ),
            train_pipeline=train_pipeline,
            test_pipeline=test_pipeline,
            train_dataloader=dict(
                loader,
                sampler=dict(type='InfiniteSampler', shuffle=True),
                dataset=dict(dataset, pipeline=train_pipeline),
            ),
            val_dataloader=dict(
                loader, dataset=dict(dataset, pipeline=test_pipeline)
            ),
            test_dataloader=dict(
                loader,
                dataset=dict(
                    type='DistortionSweepDataset',
                    space=SPACE,
                    dataset=dict(dataset, pipeline=test_pipeline),
                ),
            ),
            train_cfg=dict(type='IterBasedTrainLoop', max_iters=10),
            val_cfg=dict(type='ValLoop'),
            test_cfg=dict(type='TestLoop'),
            val_evaluator=dict(type='DistortionIoUMetric', space=SPACE),
            test_evaluator=dict(type='DistortionIoUMetric', space=SPACE),
            optim_wrapper=dict(
                type='OptimWrapper',
                optimizer=dict(type='SGD', lr=0.01),
                constructor='GearOptimWrapperConstructor',
            ),
            runner_type='ConsoleRunner',
            default_hooks=dict(
                timer=dict(type='IterTimerHook'),
                logger=dict(type='ConsoleProgressHook'),
            ),
            custom_hooks=[dict(type='FrozenBaseGuardHook')],
            load_from='base.pth',
            visualizer=dict(
                type='SegLocalVisualizer',
                vis_backends=[dict(type='LocalVisBackend')],
                name='visualizer',
            ),
        )
    )


@pytest.fixture(scope='module')
def gearnn(tmp_path_factory):
    """The toy GearNN config (as a file), its model with every gear moved
    away from the base, and its checkpoint."""
    folder = tmp_path_factory.mktemp('gearnn')
    cfg = _gear_config(tiny_segmentor(SIZE, dropout_ratio=0.0))
    config = folder / 'gear_config.py'
    cfg.dump(str(config))
    cfg = Config.fromfile(str(config))  # the gear table as the file has it
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        for gear in range(1, model.space.num_gears):
            for p in model.trainable_gear_parameters(gear):
                p.add_(torch.randn_like(p))
    checkpoint = folder / 'gearnn.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    return str(config), model, str(checkpoint)


# In a process where `import mmseg_gearnn` fails: stock mmseg builds the
# exported config, loads the gear and predicts; the logits and the masks
# come back as JSON.
_WITHOUT_PLUGIN = textwrap.dedent(
    """
    import json, sys
    sys.modules['mmseg_gearnn'] = None
    try:
        import mmseg_gearnn  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit('mmseg_gearnn imported')
    import numpy as np
    import torch
    from mmseg.apis import MMSegInferencer, inference_model, init_model

    config, checkpoint, inputs, frame = sys.argv[1:5]
    model = init_model(config, checkpoint, device='cpu')
    inputs = torch.from_numpy(np.load(inputs))
    size = tuple(inputs.shape[-2:])
    metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)] * len(
        inputs
    )
    with torch.no_grad():
        logits = model.encode_decode(inputs, metas)
    frame = np.load(frame)
    mask = inference_model(model, frame).pred_sem_seg.data[0].numpy()
    inferencer = MMSegInferencer(config, checkpoint, device='cpu')
    mmseg_mask = inferencer(frame)['predictions']
    print(json.dumps(dict(
        type=type(model).__name__,
        plugin_loaded=any(m.startswith('mmseg_gearnn') for m in sys.modules
                          if sys.modules[m] is not None),
        logits=logits.tolist(),
        mask=mask.tolist(),
        mmseg_mask=np.asarray(mmseg_mask).tolist(),
    )))
    """
)


def _logits(segmentor, inputs):
    metas = [dict(img_shape=SIZE, ori_shape=SIZE, pad_shape=SIZE)] * len(
        inputs
    )
    with torch.no_grad():
        return segmentor.encode_decode(inputs, metas)


def _gear_logits(model, inputs):
    gear = model.space.gear_id(*LEVEL)
    with model.gear_bank.lock:
        model.switch_gear(gear)
        try:
            return _logits(model.segmentor, inputs)
        finally:
            model.restore_base()


@pytest.mark.faults
def test_stock_mmseg_without_the_plugin(gearnn, tmp_path):
    config, model, checkpoint = gearnn
    (result,) = export_gears(
        config, checkpoint, str(tmp_path / 'out'), levels=[LEVEL]
    )
    assert result['requires_plugin'] == []
    assert result['base_config_summary'][0].startswith('a plain mmseg')
    with open(result['base_config']) as f:
        # the header comment says what the file is; the config itself
        text = ''.join(line for line in f if not line.startswith('#'))
    for plugin_word in (
        'mmseg_gearnn',
        'custom_imports',
        'Checked',
        'KeepCleanCopy',
        'Distortion',
        "'distortion'",
        'clean_img',
        "'skipped'",
        'CamVidDataset',
        'ConsoleRunner',
        'ConsoleProgressHook',
        'GearOptimWrapperConstructor',
        'FrozenBaseGuardHook',
        'GearNN',
    ):
        assert plugin_word not in text, plugin_word

    inputs = torch.randn(
        2, 3, *SIZE, generator=torch.Generator().manual_seed(1)
    )
    frame = np.random.RandomState(0).randint(0, 256, (*SIZE, 3), np.uint8)
    np.save(tmp_path / 'inputs.npy', inputs.numpy())
    np.save(tmp_path / 'frame.npy', frame)
    proc = subprocess.run(
        [
            sys.executable,
            '-c',
            _WITHOUT_PLUGIN,
            result['base_config'],
            result['checkpoint'],
            str(tmp_path / 'inputs.npy'),
            str(tmp_path / 'frame.npy'),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got['type'] == 'EncoderDecoder'
    assert not got['plugin_loaded']
    want = _gear_logits(model, inputs)
    assert np.abs(np.array(got['logits']) - want.numpy()).max() <= 1e-5
    # The gear is in the checkpoint: the base predicts otherwise.
    base = _logits(model.segmentor, inputs).numpy()
    assert np.abs(np.array(got['logits']) - base).max() > 1e-3
    assert np.array_equal(got['mask'], got['mmseg_mask'])


def test_plugin_left_out_of_every_part(gearnn):
    config, _, _ = gearnn
    base, requires, notes = plain_base_config(Config.fromfile(config))
    assert requires == []
    assert 'custom_imports' not in base
    assert [s['type'] for s in base.test_pipeline] == [
        'LoadImageFromFile',
        'LoadAnnotations',
        'PackSegInputs',
    ]
    assert base.test_pipeline[-1]['meta_keys'] == META_KEYS[:-1]
    assert [s['type'] for s in base.train_pipeline] == [
        'LoadImageFromFile',
        'LoadAnnotations',
        'RandomFlip',
        'PackSegInputs',
    ]
    assert 'num_classes' not in base.train_pipeline[1]
    # The plugin's dataset: train and val loaders go with what the Runner
    # wants with them; the test loader keeps its pipeline on mmseg's
    # dataset.
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper'):
        assert key not in base
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        assert key not in base
    assert base.test_dataloader.dataset.type == 'BaseSegDataset'
    assert base.test_dataloader.dataset.pipeline == base.test_pipeline
    assert base.test_evaluator.type == 'IoUMetric'
    assert list(base.default_hooks) == ['timer']
    for key in (
        'runner_type',
        'custom_hooks',
        'load_from',
        'distortion_space',
        'gearnn_meta_keys',
        'dataset_type',
    ):
        assert key not in base, key
    assert any(n.startswith('train_dataloader: the dataset') for n in notes)


def test_other_custom_imports_stay(gearnn):
    config, _, _ = gearnn
    cfg = Config.fromfile(config)
    cfg.custom_imports = dict(imports=['mmseg_gearnn', 'json'])
    base, requires, _ = plain_base_config(cfg)
    assert requires == []
    assert base.custom_imports['imports'] == ['json']


@pytest.mark.faults
def test_a_plugin_backbone_is_named(gearnn, tmp_path):
    """A segmentor with the plugin's backbone needs the plugin: the export
    says so and keeps custom_imports (no model is built here)."""
    config, _, _ = gearnn
    cfg = Config.fromfile(config)
    cfg.model.segmentor.backbone = dict(type='EfficientNetLite0')
    base, requires, notes = plain_base_config(cfg)
    assert requires == ['EfficientNetLite0']
    assert base.custom_imports['imports'] == ['mmseg_gearnn']
    # Everything else is plain all the same.
    assert plugin_free(base, keep='model')

    from mmseg_gearnn.apis.export import base_config_summary

    (first, *_) = base_config_summary(requires, notes)
    assert 'needs the mmseg_gearnn plugin' in first
    assert 'EfficientNetLite0' in first


def plugin_free(base: Config, keep: str) -> bool:
    from mmseg_gearnn.apis.plain_config import plugin_types

    return not plugin_types({k: v for k, v in base.items() if k != keep})


def test_onnx_takes_any_batch_size(gearnn, tmp_path):
    pytest.importorskip('onnx')
    onnxruntime = pytest.importorskip('onnxruntime')
    config, model, checkpoint = gearnn
    (result,) = export_gears(
        config, checkpoint, str(tmp_path), levels=[LEVEL], onnx=True
    )
    assert result['onnx_max_abs_diff'] <= 1e-4
    session = onnxruntime.InferenceSession(
        result['onnx'], providers=['CPUExecutionProvider']
    )
    for batch in (2, 3):
        inputs = torch.randn(
            batch, 3, *SIZE, generator=torch.Generator().manual_seed(batch)
        )
        (logits,) = session.run(None, {'inputs': inputs.numpy()})
        want = _gear_logits(model, inputs).numpy()
        assert logits.shape == want.shape
        assert np.abs(logits - want).max() <= 1e-4


def test_export_reads_the_gear_under_the_lock(gearnn):
    """An inference on another gear that starts between the export's
    switch and its read waits for the read: the exported tensors are the
    gear's."""
    _, model, _ = gearnn
    gear, other = model.space.gear_id(*LEVEL), 1
    inputs = torch.randn(1, 3, *SIZE)
    started, done = threading.Event(), threading.Event()

    def infer_other_gear():
        started.set()
        with model.gear_bank.lock:
            model.switch_gear(other)
            _logits(model.segmentor, inputs)
        done.set()

    def in_between(module, prefix, keep_vars):
        # Runs inside the export's read, after its switch.
        if not prefix and not started.is_set():
            threading.Thread(target=infer_other_gear).start()
            done.wait(timeout=0.5)

    want = _gear_state(model, gear)
    theirs = _gear_state(model, other)
    assert any(not torch.equal(t, want[k]) for k, t in theirs.items())
    handle = model.segmentor.register_state_dict_pre_hook(in_between)
    try:
        got = gear_state_dict(model, gear)
    finally:
        handle.remove()
    assert done.wait(timeout=10)
    model.restore_base()
    assert list(got) == list(want)
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name


def _gear_state(model, gear):
    with model.gear_bank.lock:
        model.switch_gear(gear)
        try:
            return {
                k: v.detach().clone()
                for k, v in model.segmentor.state_dict().items()
            }
        finally:
            model.restore_base()


def test_cli_says_the_config_is_plain(gearnn, tmp_path):
    config, _, checkpoint = gearnn
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'mmseg_gearnn.tools.export_gear',
            config,
            checkpoint,
            '--out-dir',
            str(tmp_path),
            '--level',
            *map(str, LEVEL),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        'base config: a plain mmseg config: stock mmseg builds it without '
        'mmseg_gearnn'
    ) in proc.stdout
    note = "  train_dataloader: the dataset (CamVidDataset) is the plugin's"
    assert note in proc.stdout
