"""User configs as the docs show them, shrunk to run on a CPU in seconds
(not a test module).

The "In your own project" snippet is copied from docs/usage.md (README.md
shows the same block, checked equal), so a test of it cannot drift from
what users read; only its paths are changed:
the plugin's folder and the base mmseg config (three model families).
Each family is shrunk with the overrides a user would pass through
``--cfg-options`` (tiny widths, no pretrained weights) and trains on a few
procedural street frames written in the layout of the mmseg dataset it
inherits (Cityscapes, ADE20K).
"""

import re
from pathlib import Path
from typing import Dict

import cv2
import numpy as np

from mmseg_gearnn.datasets.procedural import render_street

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / 'README.md'
USAGE = REPO_ROOT / 'docs' / 'usage.md'
PSPNET = 'mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py'
CROP = (32, 32)  # (h, w)
NUM_FRAMES = 2
# The inherited PSPNet Cityscapes pipelines at a 32x32 crop, BN
# re-estimation after training on two batches only: what a user passes to
# try the own-project config on a CPU.
TINY_PSPNET = {
    'model.segmentor.data_preprocessor.size': (32, 32),
    'train_dataloader.dataset.pipeline.2.scale': (64, 32),
    'train_dataloader.dataset.pipeline.3.crop_size': (32, 32),
    'val_dataloader.dataset.pipeline.1.scale': (64, 32),
    'test_dataloader.dataset.pipeline.1.scale': (64, 32),
    'gearnn_hooks.2.batches_per_gear': 1,
    'gearnn_hooks.2.max_batches': 2,
}


def doc_block(heading: str, index: int = 0, doc: Path = USAGE) -> str:
    """The ``index``-th python block under ``heading`` in ``doc`` (by
    default docs/usage.md), up to the next heading."""
    text = doc.read_text()
    start = text.index(heading)
    end = text.find('\n#', start + len(heading))
    section = text[start : end if end != -1 else None]
    blocks = re.findall(r'```python\n(.*?)```', section, flags=re.S)
    return blocks[index]


def own_project_config(path: Path, mmseg_config: str = PSPNET) -> Path:
    """Writes the docs' "In your own project" config to ``path``, with the
    plugin's folder and the mmseg base config filled in."""
    snippet = doc_block('### In your own project')
    assert PSPNET in snippet, snippet
    text = snippet.replace(
        'path/to/mmseg_gearnn/', f'{REPO_ROOT.as_posix()}/'
    ).replace(PSPNET, mmseg_config)
    path.write_text(text)
    return path


def _write_frames(images: Path, labels: Path, names, label_of) -> None:
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for i, (img_name, label_name) in enumerate(names):
        img, label = render_street(np.random.default_rng(i), (48, 64))
        assert cv2.imwrite(str(images / img_name), img)
        assert cv2.imwrite(str(labels / label_name), label_of(label))


def cityscapes_layout(root: Path) -> Path:
    """``leftImg8bit/{train,val}`` and ``gtFine/*_labelTrainIds.png``."""
    for split in ('train', 'val'):
        names = [
            (
                f'c_{i:06d}_000019_leftImg8bit.png',
                f'c_{i:06d}_000019_gtFine_labelTrainIds.png',
            )
            for i in range(NUM_FRAMES)
        ]
        _write_frames(
            root / 'leftImg8bit' / split / 'c',
            root / 'gtFine' / split / 'c',
            names,
            lambda label: label,
        )
    return root


def ade20k_layout(root: Path) -> Path:
    """``images/{training,validation}/*.jpg`` and ``annotations/*.png``
    (0 is "other", classes from 1: ADE20K's reduce_zero_label)."""
    for split in ('training', 'validation'):
        names = [
            (f'ADE_{split}_{i:08d}.jpg', f'ADE_{split}_{i:08d}.png')
            for i in range(NUM_FRAMES)
        ]
        _write_frames(
            root / 'images' / split,
            root / 'annotations' / split,
            names,
            lambda label: label + 1,
        )
    return root


NO_WEIGHTS = {'model.segmentor.pretrained': None}
BN = dict(type='BN', requires_grad=True)

# The shrinking overrides of each family, as --cfg-options would give them.
FAMILIES: Dict[str, dict] = dict(
    pspnet=dict(
        config=PSPNET,
        layout=cityscapes_layout,
        options={
            **NO_WEIGHTS,
            'model.segmentor.backbone.depth': 18,
            'model.segmentor.backbone.stem_channels': 8,
            'model.segmentor.backbone.base_channels': 8,
            'model.segmentor.backbone.norm_cfg': BN,
            'model.segmentor.decode_head.in_channels': 64,
            'model.segmentor.decode_head.channels': 8,
            'model.segmentor.decode_head.norm_cfg': BN,
            'model.segmentor.auxiliary_head.in_channels': 32,
            'model.segmentor.auxiliary_head.channels': 8,
            'model.segmentor.auxiliary_head.norm_cfg': BN,
        },
    ),
    segformer=dict(
        config='mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
        layout=ade20k_layout,
        options={
            **NO_WEIGHTS,
            'model.segmentor.backbone.init_cfg': None,
            'model.segmentor.backbone.embed_dims': 8,
            'model.segmentor.backbone.num_layers': [1, 1, 1, 1],
            # Stage i is embed_dims * num_heads[i] wide.
            'model.segmentor.backbone.num_heads': [1, 1, 1, 1],
            'model.segmentor.decode_head.in_channels': [8, 8, 8, 8],
            'model.segmentor.decode_head.channels': 8,
            'model.segmentor.decode_head.norm_cfg': BN,
        },
    ),
    bisenetv2=dict(
        config='mmseg::bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py',
        layout=cityscapes_layout,
        options={
            **NO_WEIGHTS,
            'model.segmentor.backbone.detail_channels': (8, 8, 16),
            'model.segmentor.backbone.semantic_channels': (8, 8, 16, 16),
            'model.segmentor.backbone.semantic_expansion_ratio': 2,
            'model.segmentor.backbone.bga_channels': 16,
            'model.segmentor.backbone.norm_cfg': BN,
            'model.segmentor.decode_head.in_channels': 16,
            'model.segmentor.decode_head.channels': 8,
            'model.segmentor.decode_head.norm_cfg': BN,
            # The auxiliary heads read the semantic branch's stages.
            **{
                f'model.segmentor.auxiliary_head.{i}.{key}': value
                for i, width in enumerate((8, 8, 16, 16))
                for key, value in (
                    ('in_channels', width),
                    ('channels', 8),
                    ('norm_cfg', BN),
                )
            },
        },
    ),
)


def run_options(data_root: Path, work_dir: Path, max_iters: int = 4) -> dict:
    """The run's overrides: the data, a short schedule, one process."""
    return {
        'work_dir': str(work_dir),
        'model.adaptor': 'bn',  # the docs: "or 'bn', 'all', a list of names"
        # A user sets load_from=BASE.pth; these runs train on the init
        # weights, which a gear run refuses without this opt-in.
        'model.allow_random_base': True,
        'train_dataloader.dataset.data_root': str(data_root),
        'val_dataloader.dataset.data_root': str(data_root),
        'test_dataloader.dataset.data_root': str(data_root),
        'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'train_cfg.max_iters': max_iters,
        'train_cfg.val_interval': max_iters,
        'default_hooks.checkpoint.interval': max_iters,
        'default_hooks.logger.interval': 1,
        'param_scheduler': [],
        'env_cfg.cudnn_benchmark': False,
        'randomness.seed': 0,
    }


def as_cli(options: dict) -> list:
    """``--cfg-options`` words for ``options`` (dicts spelt key by key)."""
    words = []
    for key, value in options.items():
        if isinstance(value, dict):
            words += as_cli({f'{key}.{k}': v for k, v in value.items()})
        elif isinstance(value, (list, tuple)):
            inner = ','.join(str(v) for v in value)
            words.append(
                f'{key}=[{inner}]'
                if isinstance(value, list)
                else f'{key}=({inner})'
            )
        else:
            words.append(f'{key}={value}')
    return words
