"""tools/export_gear.py and mmseg_gearnn.apis.export: a gear baked into a
plain mmseg checkpoint that stock mmseg loads and predicts with, as the
GearNN model does on that gear; an ONNX file per gear.

The demo GearNN config (a tiny DeepLabV3+ at 96x128) with random weights
and gears moved away from the base.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.apis import MMSegInferencer, inference_model, init_model
from mmseg.registry import MODELS

from mmseg_gearnn.apis import GearNNInferencer, export_gears
from mmseg_gearnn.apis.export import export_onnx
from mmseg_gearnn.distortions import build_space

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = (
    REPO_ROOT
    / 'configs'
    / 'gearnn'
    / 'gearnn_deeplabv3plus_r18-tiny_1xb8-600_procedural-96x128.py'
)
SIZE = (96, 128)
SPACE = build_space(Config.fromfile(str(CONFIG)).distortion_space)
GEAR = SPACE.gear_id('jpeg', 15)


@pytest.fixture(scope='module')
def gearnn(tmp_path_factory):
    """The GearNN model and its checkpoint; every gear differs from the
    base."""
    cfg = Config.fromfile(str(CONFIG))
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        for gear in range(1, SPACE.num_gears):
            for p in model.trainable_gear_parameters(gear):
                p.add_(torch.randn_like(p))
    path = tmp_path_factory.mktemp('gearnn') / 'gearnn.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model, path


@pytest.fixture(scope='module')
def exported(gearnn, tmp_path_factory):
    _, checkpoint = gearnn
    out = tmp_path_factory.mktemp('export')
    results = export_gears(str(CONFIG), str(checkpoint), str(out), [GEAR])
    return out, results


def _logits(segmentor, inputs):
    metas = [dict(img_shape=SIZE, ori_shape=SIZE, pad_shape=SIZE)] * len(
        inputs
    )
    with torch.no_grad():
        return segmentor.encode_decode(inputs, metas)


def test_stock_mmseg_predicts_what_the_gear_predicts(gearnn, exported):
    model, checkpoint = gearnn
    out, results = exported
    (result,) = results
    assert (result['gear'], result['type'], result['level']) == (
        GEAR,
        'jpeg',
        15,
    )
    path = Path(result['checkpoint'])
    assert path.name == f'gear_{GEAR:02d}_jpeg_15.pth'
    # Only tensors and plain types: torch's weights-only loading as is.
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    saved = torch.load(path, weights_only=True)
    assert list(saved['state_dict']) == list(model.segmentor.state_dict())
    assert saved['meta']['gearnn']['gear'] == GEAR

    base_config = out / 'base_config.py'
    text = base_config.read_text()
    assert 'Distortion' not in text and 'GearNN' not in text
    stock = init_model(str(base_config), str(path), device='cpu')
    assert type(stock).__name__ == 'EncoderDecoder'

    inputs = torch.randn(
        2, 3, *SIZE, generator=torch.Generator().manual_seed(1)
    )
    model.switch_gear(GEAR)
    try:
        want = _logits(model.segmentor, inputs)
    finally:
        model.restore_base()
    got = _logits(stock, inputs)
    assert (got - want).abs().max().item() <= 1e-5
    # The gear is in the checkpoint: the base predicts otherwise.
    assert (_logits(model.segmentor, inputs) - got).abs().max().item() > 1e-3

    # A frame of that gear: mmseg's inference_model and MMSegInferencer
    # give the GearNN inferencer's mask.
    frame = np.random.RandomState(0).randint(0, 256, (*SIZE, 3), np.uint8)
    gearnn_mask = GearNNInferencer(str(CONFIG), str(checkpoint))(
        frame, metadata=[dict(type='jpeg', level=15)]
    )['predictions'][0]
    stock_mask = inference_model(stock, frame).pred_sem_seg.data[0].numpy()
    assert np.array_equal(stock_mask, gearnn_mask)
    mmseg_mask = MMSegInferencer(str(base_config), str(path), device='cpu')(
        frame
    )['predictions']
    assert np.array_equal(mmseg_mask, gearnn_mask)


def test_onnx_per_gear(gearnn, tmp_path):
    pytest.importorskip('onnx')
    onnxruntime = pytest.importorskip('onnxruntime')
    model, checkpoint = gearnn
    (result,) = export_gears(
        str(CONFIG), str(checkpoint), str(tmp_path), [GEAR], onnx=True
    )
    assert result['onnx_max_abs_diff'] <= 1e-4
    session = onnxruntime.InferenceSession(
        result['onnx'], providers=['CPUExecutionProvider']
    )
    inputs = torch.randn(
        1, 3, *SIZE, generator=torch.Generator().manual_seed(2)
    )
    (logits,) = session.run(None, {'inputs': inputs.numpy()})
    model.switch_gear(GEAR)
    try:
        want = _logits(model.segmentor, inputs).numpy()
    finally:
        model.restore_base()
    assert np.abs(logits - want).max() <= 1e-4
    assert np.array_equal(logits.argmax(1), want.argmax(1))


class _Eigvals(torch.nn.Module):
    """A segmentor whose tensor forward uses an op ONNX does not have."""

    def encode_decode(self, inputs, metas):
        return inputs + torch.linalg.eigvals(inputs[0, 0]).real.sum()


@pytest.mark.faults
def test_an_op_that_does_not_export(tmp_path):
    pytest.importorskip('onnx')
    with pytest.raises(RuntimeError, match='_Eigvals does not export to ONNX'):
        export_onnx(_Eigvals(), str(tmp_path / 'x.onnx'), (8, 8))
    assert not (tmp_path / 'x.onnx').exists()


@pytest.mark.faults
def test_gear_outside_the_table(gearnn, tmp_path):
    _, checkpoint = gearnn
    with pytest.raises(ValueError, match=r'gear 99 is not in .*5 jpeg 15'):
        export_gears(str(CONFIG), str(checkpoint), str(tmp_path), [99])
    with pytest.raises(
        ValueError, match=r'jpeg level 42 has no gear.*0 clean'
    ):
        export_gears(
            str(CONFIG), str(checkpoint), str(tmp_path), levels=[('jpeg', 42)]
        )
    assert not list(tmp_path.iterdir())


@pytest.mark.faults
def test_gears_file_of_another_model(gearnn, tmp_path):
    _, checkpoint = gearnn
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.adaptor = ['decode_head.conv_seg.weight']
    other = MODELS.build(cfg.model)
    gears_file = tmp_path / 'gears.pth'
    other.save_gears(str(gears_file))
    with pytest.raises(ValueError, match='does not match this model'):
        export_gears(
            str(CONFIG),
            str(checkpoint),
            str(tmp_path / 'out'),
            [GEAR],
            gears_file=str(gears_file),
        )


def test_cli(gearnn, tmp_path):
    _, checkpoint = gearnn
    command = [
        sys.executable,
        str(REPO_ROOT / 'tools' / 'export_gear.py'),
        str(CONFIG),
        str(checkpoint),
        '--out-dir',
        str(tmp_path),
    ]
    proc = subprocess.run(
        command + ['--gear', '0', '--level', 'brightness', '0.2'],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    brightness = SPACE.gear_id('brightness', 0.2)
    assert 'gear 0 (clean): ' in proc.stdout
    assert f'gear {brightness} (brightness 0.2): ' in proc.stdout
    assert (tmp_path / 'gear_00_clean.pth').is_file()
    assert (tmp_path / f'gear_{brightness:02d}_brightness_0.2.pth').is_file()
    assert 'base_config.py' in proc.stdout

    proc = subprocess.run(
        command + ['--gear', '13'], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    assert 'gear 13 is not in the gear table' in proc.stderr
