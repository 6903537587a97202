"""Frame-by-frame GearNN inference on an image folder or a video.

Each frame is routed to a gear (its distortion metadata, the distortion
estimator, or the default gear), segmented with that gear switched in, and
recorded: frame name, gear, its (type, level), the routing source and the
time taken. Masks (and optional overlays) and a per-frame report are written
to an output folder.
"""

import csv
import io
import json
import os
import os.path as osp
import time
import warnings
from collections import Counter
from typing import Callable, Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_checkpoint
from mmseg.registry import DATASETS, MODELS, TRANSFORMS

from ..distortions import CLEAN
from ..utils.io import atomic_write

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')

# PackSegInputs' meta keys when the config's test pipeline names none.
DEFAULT_META_KEYS = (
    'img_path',
    'ori_shape',
    'img_shape',
    'pad_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'reduce_zero_label',
    'distortion',
)

# The report's columns, in order (``frames.csv``).
RECORD_FIELDS = (
    'frame',
    'status',
    'gear',
    'type',
    'level',
    'source',
    'ms',
    'reason',
)

Frame = Tuple[str, str, Optional[np.ndarray]]
MetadataType = Union[str, os.PathLike, dict, list, None]


def fixed_palette(num_classes: int) -> List[List[int]]:
    """A deterministic RGB palette for models without dataset metainfo."""
    rng = np.random.RandomState(42)
    return rng.randint(0, 256, size=(max(num_classes, 1), 3)).tolist()


def _unique_names(paths: List[str]) -> List[str]:
    """Frame names: the file stems, or file names where stems collide."""
    stems = [osp.splitext(osp.basename(p))[0] for p in paths]
    counts = Counter(stems)
    return [
        stem if counts[stem] == 1 else osp.basename(path)
        for stem, path in zip(stems, paths)
    ]


class FrameSource:
    """The frames of an image folder, a single image or a video file.

    Folder frames are its image files (``IMG_EXTENSIONS``) in sorted order,
    named by file stem; video frames are named ``frame_000001``, ...

    Args:
        path (str): a folder, an image file or a video file.
    """

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        path = os.fspath(path)
        if osp.isdir(path):
            self.kind = 'folder'
            self.paths = sorted(
                osp.join(path, f)
                for f in os.listdir(path)
                if f.lower().endswith(IMG_EXTENSIONS)
                and osp.isfile(osp.join(path, f))
            )
            if not self.paths:
                raise ValueError(
                    f'no image files ({", ".join(IMG_EXTENSIONS)}) in {path}'
                )
            self.names: Optional[List[str]] = _unique_names(self.paths)
        elif osp.isfile(path) and path.lower().endswith(IMG_EXTENSIONS):
            self.kind = 'image'
            self.paths = [path]
            self.names = _unique_names(self.paths)
        elif osp.isfile(path):
            self.kind = 'video'
            capture = cv2.VideoCapture(path)
            opened = capture.isOpened()
            capture.release()
            if not opened:
                raise ValueError(f'cannot open {path} as a video')
            self.paths = []
            self.names = None
        else:
            raise FileNotFoundError(f'no such folder or file: {path}')
        self.path = path

    def __len__(self) -> int:
        """The number of frames (a video's container estimate)."""
        if self.names is not None:
            return len(self.names)
        capture = cv2.VideoCapture(self.path)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        return max(count, 0)

    @staticmethod
    def video_name(index: int) -> str:
        return f'frame_{index + 1:06d}'

    def name_at(self, index: int) -> str:
        if self.names is not None:
            return self.names[index]
        return self.video_name(index)

    def __iter__(self) -> Iterator[Frame]:
        """Yields (name, path, image); image is None for an unreadable
        file."""
        if self.names is not None:
            for name, path in zip(self.names, self.paths):
                yield name, path, cv2.imread(path, cv2.IMREAD_COLOR)
            return
        capture = cv2.VideoCapture(self.path)
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                yield self.video_name(index), self.path, frame
                index += 1
        finally:
            capture.release()


def read_metadata(path: Union[str, os.PathLike]) -> Union[dict, list]:
    """Per-frame distortion metadata from a JSON or CSV file.

    JSON: ``{frame_name: {"type": "jpeg", "level": 15}}`` or a list in frame
    order (``null`` for a frame without metadata). CSV: columns ``frame``,
    ``type``, ``level`` (an empty ``type``: no metadata for that frame).
    """
    path = os.fspath(path)
    if path.lower().endswith('.csv'):
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            missing = {'frame', 'type', 'level'} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f'{path}: CSV metadata needs the columns frame, type, '
                    f'level; missing {sorted(missing)}'
                )
            table = {}
            for row in reader:
                if not (row['type'] or '').strip():
                    table[row['frame']] = None
                    continue
                level = (row['level'] or '').strip()
                table[row['frame']] = dict(
                    type=row['type'].strip(),
                    level=float(level) if level else None,
                )
            return table
    with open(path) as f:
        table = json.load(f)
    if not isinstance(table, (dict, list)):
        raise ValueError(
            f'{path}: metadata must be a JSON object (frame name -> '
            f'{{"type", "level"}}) or a list in frame order'
        )
    return table


class GearNNInferencer:
    """Runs a :class:`GearNNSegmentor` frame by frame.

    Each frame is packed as the config's test pipeline would pack a loaded
    image (``PackSegInputs`` with ``'distortion'`` in its meta keys), with
    ``results['distortion'] = space.record(type, level)`` where the frame has
    metadata, and goes through ``model.test_step`` on its own; the model
    routes it (``metainfo['gear_routed']`` / ``['gear_source']``).

    Args:
        config (str | Config): a GearNN config; its ``custom_imports``
            loads the plugin.
        checkpoint (str, optional): the model's checkpoint.
        gears_file (str, optional): a compact gears file, loaded after the
            checkpoint.
        estimator (str, optional): a distortion estimator file; sets
            ``model.estimator``.
        routing (str, optional): ``'metadata'``, ``'estimate'`` or
            ``'checked'``; sets ``model.routing``.
        device (str): the torch device. Defaults to ``'cpu'``.
        cfg_options (dict, optional): overrides merged into the config.

    Example:
        >>> inferencer = GearNNInferencer(CONFIG, 'gearnn.pth')
        >>> summary = inferencer('frames/', 'out/', metadata='meta.json')
    """

    def __init__(
        self,
        config: Union[str, Config],
        checkpoint: Optional[str] = None,
        gears_file: Optional[str] = None,
        estimator: Optional[str] = None,
        routing: Optional[str] = None,
        device: str = 'cpu',
        cfg_options: Optional[dict] = None,
    ) -> None:
        cfg = (
            Config.fromfile(config)
            if isinstance(config, (str, os.PathLike))
            else config.copy()
        )
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        if estimator is not None:
            cfg.model.estimator = estimator
        if routing is not None:
            cfg.model.routing = routing
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        self.cfg = cfg
        model = MODELS.build(cfg.model)
        if not (hasattr(model, 'route') and hasattr(model, 'space')):
            raise TypeError(
                f'{config} builds a {type(model).__name__}, not a '
                'GearNNSegmentor'
            )
        meta: dict = {}
        if checkpoint is not None:
            loaded = load_checkpoint(model, checkpoint, map_location='cpu')
            meta = loaded.get('meta', {}) if isinstance(loaded, dict) else {}
        if gears_file is not None:
            model.load_gears(gears_file)
        self.model = model.to(device).eval()
        self.space = model.space
        self.dataset_meta = meta.get('dataset_meta') or self._config_metainfo()
        palette = (self.dataset_meta or {}).get('palette')
        num_classes = int(model.num_classes)
        if not palette or len(palette) < num_classes:
            palette = fixed_palette(num_classes)
        self.palette = np.asarray(palette, dtype=np.uint8)
        self.pack = TRANSFORMS.build(
            dict(type='PackSegInputs', meta_keys=self._meta_keys())
        )

    # -- configuration ---------------------------------------------------
    def _meta_keys(self) -> tuple:
        for step in self.cfg.get('test_pipeline', None) or []:
            if step.get('type') == 'PackSegInputs' and 'meta_keys' in step:
                keys = tuple(step['meta_keys'])
                return keys if 'distortion' in keys else keys + ('distortion',)
        return DEFAULT_META_KEYS

    def _config_metainfo(self) -> Optional[dict]:
        """The metainfo of the config's test (or val) dataset class."""
        for loader in ('test_dataloader', 'val_dataloader'):
            dataset = (self.cfg.get(loader) or {}).get('dataset')
            while dataset is not None:
                if dataset.get('metainfo'):
                    return dict(dataset['metainfo'])
                try:
                    cls = DATASETS.get(dataset.get('type'))
                except Exception:
                    cls = None
                info = getattr(cls, 'METAINFO', None)
                if info and info.get('palette'):
                    return dict(info)
                dataset = dataset.get('dataset')
        return None

    # -- metadata --------------------------------------------------------
    def resolve_metadata(
        self, metadata: MetadataType, frames: FrameSource
    ) -> Callable[[int, str, str], Optional[dict]]:
        """Checks every metadata entry against the space up front.

        Returns:
            callable: ``(index, name, path) -> record or None``, the
            ``distortion`` record of a frame (``space.record``).

        Raises:
            ValueError: an entry's type or level is not in the space; the
                message names the frame and the valid levels.
        """
        if metadata is None:
            return lambda index, name, path: None
        if isinstance(metadata, (str, os.PathLike)):
            metadata = read_metadata(metadata)
        if isinstance(metadata, list):
            records = [
                self._record(entry, self._list_name(frames, i))
                for i, entry in enumerate(metadata)
            ]
            return lambda index, name, path: (
                records[index] if index < len(records) else None
            )
        if isinstance(metadata, dict):
            records = {
                str(name): self._record(entry, str(name))
                for name, entry in metadata.items()
            }
            if frames.names is not None:
                known = set(frames.names) | {
                    osp.basename(p) for p in frames.paths
                }
                unknown = sorted(set(records) - known)
                if unknown:
                    warnings.warn(
                        f'metadata names frames that are not in '
                        f'{frames.path}: {unknown[:10]}'
                    )
            return lambda index, name, path: records.get(
                name, records.get(osp.basename(path))
            )
        raise TypeError(
            'metadata must be a JSON/CSV path, a dict or a list, got '
            f'{type(metadata).__name__}'
        )

    @staticmethod
    def _list_name(frames: FrameSource, index: int) -> str:
        if frames.names is not None and index >= len(frames.names):
            return f'#{index} (beyond the {len(frames.names)} frames)'
        return frames.name_at(index)

    def _record(self, entry, name: str) -> Optional[dict]:
        if entry is None:
            return None
        if not isinstance(entry, dict) or 'type' not in entry:
            raise ValueError(
                f'metadata of frame {name!r} must be {{"type": ..., '
                f'"level": ...}}, got {entry!r}'
            )
        try:
            record = self.space.record(entry['type'], entry.get('level'))
        except ValueError as err:
            raise ValueError(f'metadata of frame {name!r}: {err}') from err
        level = entry.get('level')
        if (
            record['type'] != CLEAN
            and level is not None
            and float(level) != float(record['level'])
        ):
            warnings.warn(
                f'frame {name!r}: {entry["type"]} level {level} snapped to '
                f'{record["level"]}'
            )
        return record

    # -- one frame -------------------------------------------------------
    def pack_frame(
        self, img: np.ndarray, name: str, distortion: Optional[dict] = None
    ) -> dict:
        """The packed ``inputs`` / ``data_samples`` of one BGR frame."""
        shape = img.shape[:2]
        results = dict(
            img=img,
            img_path=name,
            ori_shape=shape,
            img_shape=shape,
            scale_factor=(1.0, 1.0),
            flip=False,
            flip_direction=None,
            reduce_zero_label=False,
        )
        if distortion is not None:
            results['distortion'] = dict(distortion)
        return self.pack(results)

    @torch.no_grad()
    def infer_frame(
        self, img: np.ndarray, name: str, distortion: Optional[dict] = None
    ) -> Tuple[np.ndarray, dict]:
        """Segments one BGR frame.

        Returns:
            tuple: the uint8 class-id mask (the frame's size) and the
            frame's record (``frame``, ``gear``, ``type``, ``level``,
            ``source``, ``ms``).
        """
        packed = self.pack_frame(img, name, distortion)
        start = time.perf_counter()
        sample = self.model.test_step(
            dict(
                inputs=[packed['inputs']],
                data_samples=[packed['data_samples']],
            )
        )[0]
        ms = (time.perf_counter() - start) * 1000.0
        mask = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
        gear = int(sample.metainfo['gear_routed'])
        gear_type, level = self.space.level_of(gear)
        return mask, dict(
            frame=name,
            status='ok',
            gear=gear,
            type=gear_type,
            level=level,
            source=sample.metainfo['gear_source'],
            ms=round(ms, 3),
        )

    def overlay(
        self, img: np.ndarray, mask: np.ndarray, opacity: float = 0.5
    ) -> np.ndarray:
        """The frame blended with the palette colours of ``mask`` (BGR)."""
        colour = self.palette[np.clip(mask, 0, len(self.palette) - 1)]
        blend = (
            img.astype(np.float32) * (1 - opacity)
            + colour[..., ::-1].astype(np.float32) * opacity
        )
        return np.clip(blend, 0, 255).astype(np.uint8)

    # -- a whole input ---------------------------------------------------
    def __call__(
        self,
        inputs: Union[str, os.PathLike],
        out_dir: Union[str, os.PathLike],
        metadata: MetadataType = None,
        overlay: bool = False,
        on_frame: Optional[Callable[[dict], None]] = None,
    ) -> dict:
        """Segments every frame of ``inputs`` and writes the results.

        Writes ``masks/<name>.png`` (uint8 class ids), ``overlays/<name>.png``
        (with ``overlay``), ``frames.json`` (``summary`` and ``frames``) and
        ``frames.csv`` (one row per frame, skipped ones included), each
        atomically.

        Args:
            inputs (str): an image folder, an image or a video file.
            out_dir (str): the output folder.
            metadata (str | dict | list, optional): per-frame distortion
                metadata (see :func:`read_metadata`); frames without it are
                routed by the model's policy.
            overlay (bool): also write palette overlays.
            on_frame (callable, optional): called with each frame's record
                (skipped frames too), e.g. to print progress.

        Returns:
            dict: the summary, with the per-frame records under ``frames``.
        """
        frames = FrameSource(inputs)
        lookup = self.resolve_metadata(metadata, frames)
        out_dir = os.fspath(out_dir)
        records: List[dict] = []
        for index, (name, path, img) in enumerate(frames):
            if img is None:
                warnings.warn(f'cannot read frame {name!r} ({path}): skipped')
                record = dict(
                    frame=name, status='skipped', reason='unreadable image'
                )
            else:
                mask, record = self.infer_frame(
                    img, name, lookup(index, name, path)
                )
                atomic_write(
                    osp.join(out_dir, 'masks', f'{name}.png'), _png(mask)
                )
                if overlay:
                    atomic_write(
                        osp.join(out_dir, 'overlays', f'{name}.png'),
                        _png(self.overlay(img, mask)),
                    )
            records.append(record)
            if on_frame is not None:
                on_frame(record)
        summary = summarize(records)
        self.write_report(out_dir, summary, records)
        return dict(summary, frames=records)

    def write_report(
        self, out_dir: str, summary: dict, records: List[dict]
    ) -> None:
        """Writes ``frames.json`` and ``frames.csv`` atomically."""
        atomic_write(
            osp.join(out_dir, 'frames.json'),
            json.dumps(dict(summary=summary, frames=records), indent=2),
        )
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=RECORD_FIELDS, lineterminator='\n'
        )
        writer.writeheader()
        for record in records:
            writer.writerow({k: record.get(k, '') for k in RECORD_FIELDS})
        atomic_write(osp.join(out_dir, 'frames.csv'), buffer.getvalue())


def format_record(record: dict) -> str:
    """One line per frame: ``name gear=<g> (<type> <level>) source=<s> <ms>
    ms``, or ``name skipped (<reason>)``."""
    if record['status'] != 'ok':
        return f'{record["frame"]} skipped ({record["reason"]})'
    level = '' if record['level'] is None else f' {record["level"]}'
    return (
        f'{record["frame"]} gear={record["gear"]} ({record["type"]}{level}) '
        f'source={record["source"]} {record["ms"]:.1f} ms'
    )


def summarize(records: List[dict]) -> dict:
    """Frames done and skipped, mean time per frame, gear histogram."""
    done = [r for r in records if r['status'] == 'ok']
    skipped = [r['frame'] for r in records if r['status'] != 'ok']
    histogram = Counter(r['gear'] for r in done)
    return dict(
        frames_done=len(done),
        frames_skipped=len(skipped),
        skipped=skipped,
        mean_ms=round(sum(r['ms'] for r in done) / len(done), 3)
        if done
        else None,
        gear_histogram={str(g): histogram[g] for g in sorted(histogram)},
    )


def _png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode('.png', image)
    if not ok:
        raise RuntimeError('PNG encoding failed')
    return encoded.tobytes()
