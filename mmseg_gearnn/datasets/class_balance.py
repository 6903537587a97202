"""Per-class loss weights from the label frequencies of a training set.

Median frequency balancing (Eigen and Fergus, ICCV 2015; SegNet's CamVid
recipe): ``f_c`` is the share of class ``c`` among the pixels of the images
that contain ``c``, and ``w_c = (median_k f_k / f_c) ** power``. Rare thin
classes (pole, sign, bicyclist on CamVid) get large weights, so that a short
schedule does not learn to never predict them. ``power`` < 1 softens the
weights.
"""

from typing import List, Sequence, Tuple

import numpy as np
from mmengine.config import ConfigDict
from mmseg.registry import DATASETS


def label_pixel_counts(
    dataset_cfg: dict, num_classes: int, ignore_index: int = 255
) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel counts per class over the label maps of a dataset.

    The dataset is built with a pipeline that only loads labels
    (``LoadCheckedAnnotations``, which applies the dataset's label map and
    rejects out-of-range values), so images are never decoded.

    Args:
        dataset_cfg (dict): an mmseg dataset config (its pipeline is
            replaced).
        num_classes (int): number of classes.
        ignore_index (int): label value that is not counted.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``counts[c]``, the pixels of class
        ``c``, and ``image_pixels[c]``, the pixels of the images that
        contain ``c``.
    """
    cfg = ConfigDict(dataset_cfg)
    cfg.pipeline = [dict(type='LoadCheckedAnnotations')]
    dataset = DATASETS.build(cfg)
    if len(dataset) == 0:
        raise ValueError(f'the dataset has no samples: {dataset_cfg}')
    counts = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    for i in range(len(dataset)):
        labels = dataset[i]['gt_seg_map']
        per_class = np.bincount(
            labels[labels != ignore_index], minlength=num_classes
        )
        if len(per_class) > num_classes:
            raise ValueError(
                f'sample {i} has labels up to {len(per_class) - 1}, beyond '
                f'the {num_classes} classes'
            )
        counts += per_class
        # Every pixel of the image counts, ignored ones included (SegNet).
        image_pixels += (per_class > 0) * labels.size
    return counts, image_pixels


def median_frequency_weights(
    counts: Sequence[int],
    image_pixels: Sequence[int],
    power: float = 1.0,
    class_names: Sequence[str] = (),
) -> List[float]:
    """Median frequency balancing weights (see the module docstring).

    Args:
        counts (Sequence[int]): pixels of each class.
        image_pixels (Sequence[int]): pixels of the images containing it.
        power (float): exponent applied to the weights (1: plain median
            frequency balancing, 0.5: its square root, 0: all ones).
        class_names (Sequence[str]): names for error messages.

    Returns:
        list[float]: one weight per class.
    """
    counts = np.asarray(counts, dtype=np.float64)
    image_pixels = np.asarray(image_pixels, dtype=np.float64)
    if counts.shape != image_pixels.shape or counts.ndim != 1:
        raise ValueError('counts and image_pixels must be equal-length lists')
    if not power >= 0:
        raise ValueError(f'power must be >= 0, got {power}')
    absent = np.flatnonzero(counts == 0)
    if len(absent):
        names = [
            class_names[i] if i < len(class_names) else str(i) for i in absent
        ]
        raise ValueError(
            f'no labelled pixel of class(es) {names}: their frequency, and '
            'so their weight, is undefined'
        )
    freq = counts / image_pixels
    return ((np.median(freq) / freq) ** power).tolist()
