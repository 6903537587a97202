"""One gear out of a GearNN model, for mmseg itself or for deployment.

A gear baked into the wrapped segmentor is a plain mmseg model: its
checkpoint holds the segmentor's own state-dict keys (the gear's adaptor
tensors in place of the base's) and only tensors and plain types, so that
stock mmseg loads it with ``weights_only=True``; its config is the wrapped
segmentor's config, its pipelines without distortion transforms. Stock
mmseg then predicts what the GearNN model predicts on that gear::

    from mmseg.apis import inference_model, init_model
    model = init_model('out/base_config.py', 'out/gear_05_jpeg_15.pth')
    result = inference_model(model, 'frame.png')  # a frame of that gear

An ONNX file per gear (torch's exporter) takes the data preprocessor's
output (N x 3 x H x W, normalised; N is a dynamic axis) and gives the
logits (N x classes x H x W).
"""

import copy
import io
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import Tensor, nn

from ..distortions import CLEAN, DistortionSpace, build_space
from ..utils.io import atomic_torch_save, atomic_write
from .model_init import init_gearnn_model
from .plain_config import PLUGIN, plain_base_config

BASE_CONFIG = 'base_config.py'
# Logits of the ONNX file may differ from torch's by float rounding only.
ONNX_ATOL = 1e-4
# The batch size onnxruntime checks the file on (it is traced on 1).
ONNX_CHECK_BATCH = 2


def gear_table(space: DistortionSpace) -> str:
    """The gear table in one line: ``0 clean, 1 brightness 0.4, ...``."""
    return ', '.join(
        f'{gear} {dtype}' + ('' if level is None else f' {level}')
        for gear, dtype, level in space.gears()
    )


def resolve_gear(
    space: DistortionSpace,
    gear: Optional[int] = None,
    distortion_type: Optional[str] = None,
    level: Optional[float] = None,
) -> int:
    """The gear id named by ``gear`` or by (``distortion_type``,
    ``level``), checked against the gear table.

    Raises:
        ValueError: neither or both are given, or the gear, type or level is
            not in the table (the message lists the table).
    """
    if (gear is None) == (distortion_type is None):
        raise ValueError(
            'name a gear either by its id or by its distortion type and '
            f'level; the gear table: {gear_table(space)}'
        )
    if gear is not None:
        if (
            isinstance(gear, bool)
            or not isinstance(gear, int)
            or not 0 <= gear < space.num_gears
        ):
            raise ValueError(
                f'gear {gear!r} is not in the gear table '
                f'(0..{space.num_gears - 1}): {gear_table(space)}'
            )
        return gear
    if distortion_type == CLEAN:
        return space.gear_id(CLEAN)
    levels = space.distortions.get(distortion_type)
    listed = (
        None
        if levels is None or level is None
        else space.listed_level(distortion_type, level)
    )
    if listed is None:
        raise ValueError(
            f'{distortion_type} level {level} has no gear: the gear table '
            f'is {gear_table(space)}'
        )
    return space.gear_id(distortion_type, listed)


def gear_file_stem(space: DistortionSpace, gear: int) -> str:
    """``gear_05_jpeg_15``: the gear id, its type and level."""
    dtype, level = space.level_of(gear)
    stem = f'gear_{gear:02d}_{dtype}'
    return stem if level is None else f'{stem}_{level:g}'


# -- the gear as a plain segmentor --------------------------------------------
def gear_state_dict(model: nn.Module, gear: int) -> 'OrderedDict[str, Tensor]':
    """The wrapped segmentor's state dict with ``gear`` switched in (CPU
    copies; the model is left on its base).

    The switch, the read and the restore hold the gear lock, so that an
    inference in another thread cannot switch another gear in between.
    """
    with model.gear_bank.lock:
        model.switch_gear(gear)
        try:
            return OrderedDict(
                (k, v.detach().cpu().clone())
                for k, v in model.segmentor.state_dict().items()
            )
        finally:
            model.restore_base()


def _plain_dataset_meta(meta: Optional[dict]) -> Optional[dict]:
    if not meta:
        return None
    return dict(
        classes=[str(c) for c in meta.get('classes') or []],
        palette=[[int(v) for v in c] for c in meta.get('palette') or []],
    )


def gear_checkpoint(
    model: nn.Module, gear: int, base_cfg: Optional[Config] = None, **meta
) -> dict:
    """A plain mmseg checkpoint of ``gear``: ``state_dict`` and ``meta``
    (``dataset_meta``, the base config as ``cfg``, and under ``gearnn``
    the gear, its type and level, and ``meta``'s items), tensors and plain
    types only."""
    dtype, level = model.space.level_of(gear)
    info = dict(gear=int(gear), type=dtype, level=level, **meta)
    checkpoint_meta = dict(gearnn=info)
    dataset_meta = _plain_dataset_meta(getattr(model, 'dataset_meta', None))
    if dataset_meta is not None:
        checkpoint_meta['dataset_meta'] = dataset_meta
    if base_cfg is not None:
        checkpoint_meta['cfg'] = base_cfg.pretty_text
    return dict(meta=checkpoint_meta, state_dict=gear_state_dict(model, gear))


# -- ONNX --------------------------------------------------------------------
class SegmentorLogits(nn.Module):
    """A segmentor's tensor forward at a fixed input size: preprocessed
    inputs (N x 3 x H x W) to logits at H x W (``encode_decode``)."""

    def __init__(self, segmentor: nn.Module, shape: Tuple[int, int]) -> None:
        super().__init__()
        self.segmentor = segmentor
        self.shape = tuple(int(s) for s in shape)

    def forward(self, inputs: Tensor) -> Tensor:
        shape = self.shape
        metas = [
            dict(img_shape=shape, ori_shape=shape, pad_shape=shape)
            for _ in range(inputs.shape[0])
        ]
        return self.segmentor.encode_decode(inputs, metas)


def export_onnx(
    segmentor: nn.Module,
    path: str,
    shape: Tuple[int, int],
    check: bool = True,
) -> Optional[float]:
    """Writes ``segmentor``'s logits as an ONNX file with a dynamic batch
    axis and, with ``check`` and onnxruntime installed, compares
    onnxruntime's logits on CPU with torch's on a random batch of
    :data:`ONNX_CHECK_BATCH` inputs.

    Returns:
        float | None: the max abs logit difference (None: not checked).

    Raises:
        RuntimeError: an op of the segmentor does not export (the message
            names the model and torch's reason), or onnxruntime's logits
            differ from torch's by more than :data:`ONNX_ATOL`.
    """
    module = SegmentorLogits(segmentor, shape).eval()
    example = torch.randn(1, 3, *module.shape, generator=_generator())
    # Checked on another batch size than the traced one: the batch axis is
    # dynamic.
    check_inputs = torch.randn(
        ONNX_CHECK_BATCH, 3, *module.shape, generator=_generator()
    )
    buffer = io.BytesIO()
    try:
        with torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                buffer,
                input_names=['inputs'],
                output_names=['seg_logits'],
                dynamic_axes={'inputs': {0: 'N'}, 'seg_logits': {0: 'N'}},
                dynamo=False,
            )
    except Exception as err:
        raise RuntimeError(
            f'{type(segmentor).__name__} does not export to ONNX: '
            f'{type(err).__name__}: {str(err).splitlines()[0]} '
            '(the gear checkpoints are written and load in mmseg; '
            'only the ONNX file is missing)'
        ) from err
    atomic_write(path, buffer.getvalue())
    if not check:
        return None
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(
        path, providers=['CPUExecutionProvider']
    )
    (onnx_logits,) = session.run(None, {'inputs': check_inputs.numpy()})
    with torch.no_grad():
        torch_logits = module(check_inputs).numpy()
    diff = float(np.abs(onnx_logits - torch_logits).max())
    if diff > ONNX_ATOL:
        raise RuntimeError(
            f'{path}: onnxruntime logits differ from torch by {diff:.2e} '
            f'(more than {ONNX_ATOL:.0e})'
        )
    return diff


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def default_onnx_shape(cfg: Config) -> Optional[Tuple[int, int]]:
    """The input size of the ONNX file: the data preprocessor's ``size``
    (what every input is padded to), if the config sets one."""
    preprocessor = cfg.model.get('data_preprocessor') or {}
    size = preprocessor.get('size')
    return None if size is None else (int(size[0]), int(size[1]))


# -- the whole export ---------------------------------------------------------
def base_config_summary(requires: Sequence[str], notes: Sequence[str]):
    """What the base config is, in lines: plain mmseg, or which of the
    plugin's types it needs; then what was replaced or left out."""
    if requires:
        first = (
            f'needs the {PLUGIN} plugin (kept in custom_imports): the '
            f'segmentor uses its {", ".join(requires)}; stock mmseg without '
            f'{PLUGIN} cannot build it'
        )
    else:
        first = f'a plain mmseg config: stock mmseg builds it without {PLUGIN}'
    return [first] + list(notes)


def export_gears(
    config: Union[str, Config],
    checkpoint: str,
    out_dir: str,
    gears: Optional[Sequence[int]] = None,
    levels: Optional[Sequence[Tuple[str, float]]] = None,
    gears_file: Optional[str] = None,
    onnx: bool = False,
    onnx_shape: Optional[Tuple[int, int]] = None,
    cfg_options: Optional[dict] = None,
) -> List[Dict]:
    """Writes ``out_dir/base_config.py`` and, for each gear, a plain mmseg
    checkpoint ``out_dir/gear_<id>_<type>_<level>.pth`` (and ``.onnx``).

    Args:
        config (str | Config): the GearNN config.
        checkpoint (str): the GearNN checkpoint.
        out_dir (str): the output folder.
        gears (Sequence[int], optional): gear ids to export.
        levels (Sequence[tuple], optional): (type, level) pairs to export.
            Without ``gears`` and ``levels``: every gear.
        gears_file (str, optional): a compact gears file to load after the
            checkpoint.
        onnx (bool): also write an ONNX file per gear, checked with
            onnxruntime where it is installed.
        onnx_shape (tuple, optional): the ONNX input's (H, W); defaults to
            the data preprocessor's ``size``.
        cfg_options (dict, optional): overrides merged into the config.

    Returns:
        list[dict]: per gear, ``gear``, ``type``, ``level``, ``checkpoint``,
        ``base_config`` (its path), ``requires_plugin`` (the plugin's types
        the base config still uses: empty when stock mmseg reads it without
        the plugin), ``base_config_summary`` (lines that say so and what
        was replaced or left out; also the file's header) and, with
        ``onnx``, ``onnx`` and ``onnx_max_abs_diff``.

    Raises:
        ValueError: a gear or level is not in the gear table, or the gears
            file does not match the model.
    """
    cfg = (
        Config.fromfile(config)
        if isinstance(config, (str, os.PathLike))
        else copy.deepcopy(config)
    )
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    space = _space_of(cfg)
    wanted = [resolve_gear(space, gear=g) for g in gears or []]
    wanted += [resolve_gear(space, None, t, lv) for t, lv in levels or []]
    if not wanted:
        wanted = list(range(space.num_gears))
    shape = (onnx_shape or default_onnx_shape(cfg)) if onnx else None
    if onnx and shape is None:
        raise ValueError(
            'the ONNX input size is unknown: the data preprocessor sets no '
            'size; give onnx_shape=(H, W) (--onnx-shape H W)'
        )
    model = init_gearnn_model(cfg, checkpoint, gears_file)
    base, requires, notes = plain_base_config(cfg)
    summary = base_config_summary(requires, notes)
    os.makedirs(out_dir, exist_ok=True)
    base_path = osp.join(out_dir, BASE_CONFIG)
    header = ''.join(f'# {line}\n' for line in summary)
    atomic_write(base_path, header + base.pretty_text)
    source = dict(
        source_config=cfg.filename, source_checkpoint=os.fspath(checkpoint)
    )
    if gears_file is not None:
        source['source_gears_file'] = os.fspath(gears_file)
    results = []
    for gear in dict.fromkeys(wanted):
        stem = osp.join(out_dir, gear_file_stem(space, gear))
        dtype, level = space.level_of(gear)
        atomic_torch_save(
            gear_checkpoint(model, gear, base, **source), f'{stem}.pth'
        )
        results.append(
            dict(
                gear=gear,
                type=dtype,
                level=level,
                checkpoint=f'{stem}.pth',
                base_config=base_path,
                requires_plugin=list(requires),
                base_config_summary=list(summary),
            )
        )
    # After every checkpoint: an op that does not export stops only this.
    for result in results if onnx else []:
        path = result['checkpoint'][: -len('.pth')] + '.onnx'
        with model.gear_bank.lock:
            model.switch_gear(result['gear'])
            try:
                diff = export_onnx(model.segmentor, path, shape)
            finally:
                model.restore_base()
        result.update(onnx=path, onnx_max_abs_diff=diff)
    return results


def export_report(results: Sequence[Dict]) -> List[str]:
    """The lines that report an export (:func:`export_gears`' results): a
    line per gear, the base config and how stock mmseg loads it, and
    whether it needs the plugin (with what was replaced or left out)."""
    lines = []
    for r in results:
        level = '' if r['level'] is None else f' {r["level"]}'
        line = f'gear {r["gear"]} ({r["type"]}{level}): {r["checkpoint"]}'
        if 'onnx' in r:
            diff = r['onnx_max_abs_diff']
            checked = (
                'not checked: onnxruntime is not installed'
                if diff is None
                else f'onnxruntime max abs logit diff {diff:.1e}'
            )
            line += f', {r["onnx"]} ({checked}; batch axis N dynamic)'
        lines.append(line)
    if results:
        first = results[0]
        lines.append(
            f'base config: {first["base_config"]}; in mmseg: '
            f"init_model('{first['base_config']}', '{first['checkpoint']}')"
        )
        summary = first['base_config_summary']
        lines.append(f'base config: {summary[0]}')
        lines += [f'  {note}' for note in summary[1:]]
    return lines


def _space_of(cfg: Config) -> DistortionSpace:
    space = cfg.model.get('space')
    if space is None:
        raise ValueError(
            f'{cfg.filename or "the config"}: model has no distortion space '
            '(not a GearNN config)'
        )
    return build_space(space)
