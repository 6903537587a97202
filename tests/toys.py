"""The shared test toys (not a test module): one tiny segmentor, as a
config dict and as config source for tools run in a subprocess, and a
valid selection file.

Kept out of ``conftest.py`` on purpose: other test folders import their
``conftest`` by name, and a second ``conftest`` module would shadow theirs.
``tests/`` is on ``sys.path`` (pytest puts the root ``conftest.py``'s
folder there), so any test imports these as ``from toys import ...``.
"""

import json
from typing import Optional, Sequence, Tuple


def tiny_preprocessor(size: Optional[Tuple[int, int]] = (32, 32)) -> dict:
    """mmseg's ``SegDataPreProcessor`` with ImageNet statistics, padding to
    ``size`` (None: no fixed size)."""
    preprocessor = dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
    )
    if size is not None:
        preprocessor['size'] = size
    return preprocessor


def tiny_segmentor(
    size: Optional[Tuple[int, int]] = (32, 32),
    num_classes: int = 8,
    **head,
) -> dict:
    """A two-stage ResNetV1c + FCN head ``EncoderDecoder`` config.

    Args:
        size: the preprocessor's pad size; None pads to a multiple of 1.
        num_classes: classes of the decode head.
        **head: decode head keys to override (e.g. ``dropout_ratio=0.0``).
    """
    bn = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=tiny_preprocessor(size),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=8,
            base_channels=8,
            num_stages=2,
            strides=(1, 2),
            dilations=(1, 1),
            out_indices=(1,),
            norm_cfg=bn,
        ),
        decode_head=dict(
            type='FCNHead',
            in_channels=16,
            in_index=0,
            channels=8,
            num_convs=1,
            concat_input=False,
            num_classes=num_classes,
            norm_cfg=bn,
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0),
            **head,
        ),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'),
    )


def tiny_segmentor_source(name: str = 'model', *args, **kwargs) -> str:
    """``name = dict(...)``: :func:`tiny_segmentor` (same arguments) as
    config file source, without braces (safe inside ``str.format``)."""
    return f'{name} = {_source(tiny_segmentor(*args, **kwargs))}\n'


def _source(value) -> str:
    if isinstance(value, dict):
        items = ', '.join(f'{k}={_source(v)}' for k, v in value.items())
        return f'dict({items})'
    if isinstance(value, list):
        return '[' + ', '.join(_source(v) for v in value) + ']'
    if isinstance(value, tuple):
        return '(' + ''.join(_source(v) + ', ' for v in value) + ')'
    return repr(value)


def write_selection(
    path, names: Sequence[str], space: dict, model, method: str = 'fisher'
) -> str:
    """Writes a valid selection file (format version 1) that selects
    ``names`` of ``model`` (a bare segmentor) for ``space``."""
    from mmseg_gearnn.selection.candidates import candidate_tensors

    tensors = candidate_tensors(model)
    record = dict(
        format_version=1,
        method=method,
        tensors=[
            dict(name=n, numel=tensors[n].numel(), selected=True)
            for n in names
        ],
        selected=list(names),
        budget=dict(),
        distortion_space=space,
        model_total_bytes=sum(
            t.numel() * t.element_size() for t in tensors.values()
        ),
    )
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(record, f)
    return str(path)
