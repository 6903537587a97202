"""Where frames and their distortion metadata come from: an image folder,
an image or a video file, or arrays; metadata from a JSON or CSV file."""

import csv
import json
import os
import os.path as osp
import warnings
from collections import Counter
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..distortions import CLEAN, DistortionSpace

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')

Frame = Tuple[str, str, Optional[np.ndarray]]
FrameInput = Union[str, os.PathLike, np.ndarray]
MetadataType = Union[str, os.PathLike, dict, list, None]


def _unique_names(paths: List[str]) -> List[str]:
    """Frame names: the file stems, or file names where stems collide."""
    stems = [osp.splitext(osp.basename(p))[0] for p in paths]
    counts = Counter(stems)
    return [
        stem if counts[stem] == 1 else osp.basename(path)
        for stem, path in zip(stems, paths)
    ]


class FrameSource:
    """The frames of an image folder, an image file, a video file, or a list
    of images (arrays or files).

    Folder frames are its image files (``IMG_EXTENSIONS``) in sorted order,
    named by file stem; video and array frames are named ``frame_000001``,
    ...

    Args:
        source (str | np.ndarray | list): a folder, an image file, a video
            file, a BGR array, or a list of BGR arrays and image files.
    """

    def __init__(
        self, source: Union[FrameInput, Sequence[FrameInput]]
    ) -> None:
        self.arrays: Optional[List[Optional[np.ndarray]]] = None
        if isinstance(source, np.ndarray):
            source = [source]
        if isinstance(source, (list, tuple)):
            self.kind = 'list'
            self.arrays = [
                s if isinstance(s, np.ndarray) else None for s in source
            ]
            self.paths = [
                '' if isinstance(s, np.ndarray) else os.fspath(s)
                for s in source
            ]
            file_names = iter(_unique_names([p for p in self.paths if p]))
            self.names: Optional[List[str]] = [
                next(file_names) if path else self.video_name(i)
                for i, path in enumerate(self.paths)
            ]
            self.path = '<list>'
            return
        path = os.fspath(source)
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
            self.names = _unique_names(self.paths)
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
            arrays = self.arrays or [None] * len(self.names)
            for name, path, array in zip(self.names, self.paths, arrays):
                if array is None:
                    array = cv2.imread(path, cv2.IMREAD_COLOR)
                yield name, path, array
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


def metadata_lookup(
    metadata: MetadataType, frames: FrameSource, space: DistortionSpace
) -> Callable[[int, str, str], Optional[dict]]:
    """Each frame's ``distortion`` record from its metadata, every entry
    checked against ``space`` up front.

    Args:
        metadata (str | dict | list, optional): a JSON/CSV file (see
            :func:`read_metadata`), its table, or None (no metadata).
        frames (FrameSource): the frames the metadata describes.
        space (DistortionSpace): the model's distortion space.

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
            _record(space, entry, _list_name(frames, i))
            for i, entry in enumerate(metadata)
        ]
        return lambda index, name, path: (
            records[index] if index < len(records) else None
        )
    if isinstance(metadata, dict):
        records = {
            str(name): _record(space, entry, str(name))
            for name, entry in metadata.items()
        }
        if frames.names is not None:
            known = set(frames.names) | {
                osp.basename(p) for p in frames.paths if p
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


def _list_name(frames: FrameSource, index: int) -> str:
    if frames.names is not None and index >= len(frames.names):
        return f'#{index} (beyond the {len(frames.names)} frames)'
    return frames.name_at(index)


def _record(space: DistortionSpace, entry, name: str) -> Optional[dict]:
    if entry is None:
        return None
    if not isinstance(entry, dict) or 'type' not in entry:
        raise ValueError(
            f'metadata of frame {name!r} must be {{"type": ..., '
            f'"level": ...}}, got {entry!r}'
        )
    try:
        record = space.record(entry['type'], entry.get('level'))
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
