"""A tiny CamVid-layout folder for the dataset tests (not a test module).

Kept out of ``conftest.py`` on purpose: other test folders import their
``conftest`` by name, and a second ``conftest`` module would shadow theirs.
"""

from pathlib import Path
from typing import Dict

import cv2
import numpy as np

H, W = 32, 48
SPLITS = {'train': 3, 'val': 2}


def make_tiny_camvid(tmp_path: Path) -> Dict:
    """Write 32x48 PNGs, labels 0..11 (11 unlabelled) under ``tmp_path``.

    Returns:
        dict: ``root``, per split the file ``stems``, and the ``shape``.
    """
    rng = np.random.default_rng(0)
    root = tmp_path / 'camvid'
    stems = {}
    for split, count in SPLITS.items():
        (root / split).mkdir(parents=True)
        (root / f'{split}annot').mkdir()
        stems[split] = []
        for i in range(count):
            stem = f'{split}_{i:03d}'
            img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            label = rng.integers(0, 11, (H, W), dtype=np.uint8)
            label[:4] = 11  # an unlabelled band on top
            assert cv2.imwrite(str(root / split / f'{stem}.png'), img)
            assert cv2.imwrite(
                str(root / f'{split}annot' / f'{stem}.png'), label
            )
            stems[split].append(stem)
    return dict(root=root, stems=stems, shape=(H, W))
