"""Corrupted frames made once and kept on disk, and the training draw.

Some corruptions cost seconds a frame (glass blur about 1.2 s at 240x320
on one core), and every method is evaluated on the same corrupted val
frames: :class:`CachedRequestedDistortion` keeps each one as a lossless
PNG keyed by the frame's pixels, the corruption, its severity, the
request's seed and the ``imagecorruptions`` version, so that only the
first evaluation pays for it.

:class:`CorruptionTrainingDistortion` is ``RandomDistortion`` that records
no gear id: training draws every severity, and a gear table that shares
one gear among a corruption's severities routes them by (type, level).
"""

import hashlib
import os
import os.path as osp
import time
from functools import lru_cache
from importlib import metadata
from typing import Dict, Optional, Sequence

import cv2
import numpy as np
from mmseg.registry import TRANSFORMS

from mmseg_gearnn.distortions import (
    RandomDistortion,
    RequestedDistortion,
    corrupt,
    corruption_of,
)

# The distribution that provides ``imagecorruptions``.
LIBRARY = 'imagecorruptions-imaug'


@lru_cache(maxsize=None)
def library_version() -> str:
    """The installed version of the corruption library ('unknown' if the
    distribution is named otherwise)."""
    try:
        return metadata.version(LIBRARY)
    except metadata.PackageNotFoundError:
        return 'unknown'


def frame_key(
    img: np.ndarray, corruption: str, severity: int, seed: Optional[int]
) -> str:
    """The cache key of one corrupted frame: sha256 over the frame's
    pixels and shape, the condition, the seed and the library version."""
    digest = hashlib.sha256()
    digest.update(repr((img.shape, corruption, int(severity), seed)).encode())
    digest.update(library_version().encode())
    digest.update(np.ascontiguousarray(img).tobytes())
    return digest.hexdigest()


@TRANSFORMS.register_module()
class CachedRequestedDistortion(RequestedDistortion):
    """``RequestedDistortion`` that reads a seeded corruption from
    ``cache_dir`` when it was made before, and writes it there otherwise.

    Other requests (clean, compounds, unseeded ones, non-corruption types)
    pass through unchanged.

    Args:
        space (dict | DistortionSpace): the distortion space.
        cache_dir (str): where corrupted frames are kept.
        record_gear (bool): as for ``RequestedDistortion``.
    """

    def __init__(self, space, cache_dir: str, record_gear: bool = True):
        super().__init__(space, record_gear)
        self.cache_dir = cache_dir

    def transform(self, results: dict) -> dict:
        request = results.get('distortion_request') or {}
        corruption = corruption_of(request.get('type') or '')
        seed = request.get('seed')
        if corruption is None or seed is None or request.get('components'):
            return super().transform(results)
        results.pop('distortion_request')
        level = self.space.resolve_level(request['type'], request['level'])
        key = frame_key(results['img'], corruption, level, seed)
        path = osp.join(self.cache_dir, key[:2], key + '.png')
        img = None
        if osp.isfile(path):
            img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            img = corrupt(results['img'], corruption, level, seed)
            os.makedirs(osp.dirname(path), exist_ok=True)
            # Workers may write the same frame: publish it whole.
            tmp = f'{path}.{os.getpid()}.tmp.png'
            cv2.imwrite(tmp, img)
            os.replace(tmp, path)
        results['img'] = img
        record = self.space.record(request['type'], level)
        if not self.record_gear:
            record['gear'] = None
        results['distortion'] = record
        return results

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(space={self.space!r}, '
            f'cache_dir={self.cache_dir!r})'
        )


@TRANSFORMS.register_module()
class CorruptionTrainingDistortion(RandomDistortion):
    """``RandomDistortion`` recording no gear id (see the module
    docstring); arguments as for ``RandomDistortion``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.record_gear = False


def corruption_cost(
    img: np.ndarray, corruptions: Sequence[str], severity: int = 3
) -> Dict[str, float]:
    """Seconds to corrupt ``img`` once with each corruption at
    ``severity``: what each costs a training crop on the fly."""
    corrupt(img, corruptions[0], severity, seed=0)  # imports, caches
    costs = {}
    for name in corruptions:
        start = time.perf_counter()
        corrupt(img, name, severity, seed=0)
        costs[name] = round(time.perf_counter() - start, 3)
    return costs
