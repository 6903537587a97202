"""Street scenes drawn in code: a segmentation dataset with no files.

Every class has its own colour *and* its own texture (a spatial frequency
or pattern), and several classes share similar colours (road, sidewalk,
building and pole are all greys), so telling them apart needs the fine
detail that blur, noise, JPEG, low resolution and darkness destroy. That
makes the data a quick, honest test bed for distortion-adaptive models.

Images are generated lazily, one per index, from
``numpy.random.default_rng((seed, index))``: the same seed and index give
the same image whatever the access order, worker or process.
"""

from typing import Callable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

CLASSES = (
    'sky',
    'building',
    'road',
    'sidewalk',
    'vegetation',
    'car',
    'pedestrian',
    'pole',
)
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, CAR, PEDESTRIAN, POLE = range(8)

# Display palette (RGB, Cityscapes colours), not the rendered colours.
PALETTE = [
    [70, 130, 180],
    [70, 70, 70],
    [128, 64, 128],
    [244, 35, 232],
    [107, 142, 35],
    [0, 0, 142],
    [220, 20, 60],
    [153, 153, 153],
]

# Rendered base colours (RGB). Road, sidewalk, building and pole are close
# greys on purpose: their textures tell them apart.
_BASE_RGB = {
    SKY: (150, 180, 215),
    BUILDING: (125, 112, 100),
    ROAD: (105, 105, 110),
    SIDEWALK: (132, 124, 116),
    VEGETATION: (70, 125, 55),
    CAR: (50, 70, 150),
    PEDESTRIAN: (150, 65, 75),
    POLE: (118, 114, 106),
}

MIN_SIZE = 16


def _smooth_noise(
    rng: np.random.Generator, shape: Tuple[int, int], cell: float
) -> np.ndarray:
    """Unit-variance-ish noise that varies over about ``cell`` pixels."""
    h, w = shape
    small = rng.standard_normal(
        (max(2, int(h / cell) + 2), max(2, int(w / cell) + 2))
    ).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _texture(
    cls: int,
    rng: np.random.Generator,
    shape: Tuple[int, int],
    horizon: int,
) -> np.ndarray:
    """The float luminance pattern of one class, around zero.

    Returns an array that broadcasts to ``shape`` (H, W).
    """
    h, w = shape
    dy, dx = rng.integers(0, 16, size=2)
    # Row and column coordinates with a random phase, for broadcasting.
    y = np.arange(dy, dy + h)[:, None]
    x = np.arange(dx, dx + w)[None, :]
    if cls == SKY:
        # Smooth: a gradient brightening towards the horizon, soft clouds.
        ramp = 30.0 * np.arange(h, dtype=np.float32)[:, None] / max(horizon, 1)
        return ramp - 15 + 8 * _smooth_noise(rng, shape, 24)
    if cls == BUILDING:
        # Medium frequency: a grid of dark windows, 8 x 7 pixels.
        windows = ((y % 8) < 4) & ((x % 7) < 4)
        return np.where(windows, -40.0, 8.0) + 4 * _smooth_noise(
            rng, shape, 12
        )
    if cls == ROAD:
        # Fine grain: independent per-pixel noise.
        return 16.0 * rng.standard_normal(shape, dtype=np.float32)
    if cls == SIDEWALK:
        # Fine regular tiles: a 2-pixel checkerboard.
        return np.where(((y // 2) + (x // 2)) % 2 == 0, 22.0, -22.0)
    if cls == VEGETATION:
        # Blotchy leaves over 3 pixels.
        return 28.0 * _smooth_noise(rng, shape, 3)
    if cls == CAR:
        # Horizontal reflections: stripes of period 4.
        return np.where((y % 4) < 2, 25.0, -25.0)
    if cls == PEDESTRIAN:
        # Vertical stripes of period 3.
        return np.where((x % 3) == 0, 30.0, -15.0)
    if cls == POLE:
        # Painted rings: horizontal bands of period 6.
        return np.where((y % 6) < 3, 28.0, -28.0)
    raise ValueError(f'no texture for class {cls}')


def _fill_rect(
    label: np.ndarray, top: int, bottom: int, left: int, right: int, cls: int
) -> None:
    """Set ``label[top:bottom + 1, left:right + 1] = cls``, clipped to the
    frame (negative coordinates must not wrap around)."""
    h, w = label.shape
    top, bottom = max(top, 0), min(bottom, h - 1)
    left, right = max(left, 0), min(right, w - 1)
    if top <= bottom and left <= right:
        label[top : bottom + 1, left : right + 1] = cls


def _draw_layout(
    rng: np.random.Generator, h: int, w: int
) -> Tuple[np.ndarray, int]:
    """The label map of one street and its horizon row."""
    label = np.full((h, w), SKY, np.uint8)
    horizon = int(h * rng.uniform(0.38, 0.55))
    yy, xx = np.mgrid[0:h, 0:w]

    # Ground: a road wedge towards a vanishing point, sidewalks beside it.
    vx = w * rng.uniform(0.3, 0.7)
    half_top = w * rng.uniform(0.0, 0.04)
    half_bottom = w * rng.uniform(0.3, 0.6)
    slope = (half_bottom - half_top) / max(h - 1 - horizon, 1)

    def road_half_width(row: float) -> float:
        return half_top + slope * (row - horizon)

    ground = yy >= horizon
    label[ground] = SIDEWALK
    on_road = ground & (np.abs(xx - vx) <= road_half_width(yy))
    label[on_road] = ROAD

    # Buildings along the skyline, with a few gaps of sky.
    x0 = 0
    while x0 < w:
        width = max(3, int(w * rng.uniform(0.1, 0.3)))
        if rng.random() < 0.85:
            top = int(rng.uniform(0.03 * h, max(0.04 * h, horizon - 0.1 * h)))
            _fill_rect(label, top, horizon - 1, x0, x0 + width - 1, BUILDING)
        x0 += width

    # Trees in front of the buildings.
    for _ in range(rng.integers(0, 4)):
        center = (int(rng.uniform(0, w)), int(rng.uniform(0.2, 1.0) * horizon))
        axes = (
            max(2, int(w * rng.uniform(0.04, 0.11))),
            max(2, int(h * rng.uniform(0.07, 0.16))),
        )
        cv2.ellipse(label, center, axes, 0, 0, 360, VEGETATION, -1)

    # Objects standing on the ground, drawn far to near so that near ones
    # occlude. Their size grows towards the bottom (perspective).
    objects = []
    for _ in range(rng.integers(1, 4)):
        objects.append((CAR, rng.uniform(horizon + 0.15 * (h - horizon), h)))
    for _ in range(rng.integers(0, 5)):
        objects.append((PEDESTRIAN, rng.uniform(horizon + 2, h)))
    for _ in range(rng.integers(0, 4)):
        objects.append((POLE, rng.uniform(horizon + 2, h)))
    objects.sort(key=lambda obj: obj[1])
    for cls, bottom in objects:
        near = (bottom - horizon) / max(h - horizon, 1)
        bottom = int(min(bottom, h - 1))
        if cls == CAR:
            half = road_half_width(bottom)
            cx = vx + rng.uniform(-0.8, 0.8) * half
            cw = w * (0.08 + 0.3 * near)
            ch = cw * rng.uniform(0.45, 0.6)
            x1, x2 = int(cx - cw / 2), int(cx + cw / 2)
            body_top = int(bottom - 0.6 * ch)
            _fill_rect(label, body_top, bottom, x1, x2, CAR)
            inset = int(0.15 * cw)
            _fill_rect(
                label, int(bottom - ch), body_top, x1 + inset, x2 - inset, CAR
            )
            continue
        # Pedestrians and poles stand on the sidewalk: find one at this row.
        side = np.flatnonzero(label[bottom] == SIDEWALK)
        if side.size == 0:
            continue
        cx = int(side[rng.integers(side.size)])
        if cls == PEDESTRIAN:
            ph = h * (0.1 + 0.35 * near)
            pw = max(1, int(ph * rng.uniform(0.12, 0.18)))
            body_center = (cx, int(bottom - 0.42 * ph))
            cv2.ellipse(
                label,
                body_center,
                (pw, max(1, int(0.42 * ph))),
                0,
                0,
                360,
                PEDESTRIAN,
                -1,
            )
            head = (cx, int(bottom - 0.9 * ph))
            cv2.circle(label, head, max(1, int(0.1 * ph)), PEDESTRIAN, -1)
        else:
            height = int(h * (0.3 + 0.4 * near))
            half = max(0, int(2 * near))
            _fill_rect(
                label, bottom - height, bottom, cx - half, cx + half, POLE
            )
    return label, horizon


def render_street(
    rng: np.random.Generator, img_size: Tuple[int, int] = (96, 128)
) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one street scene.

    Args:
        rng (np.random.Generator): the only source of randomness.
        img_size (tuple[int, int]): (height, width).

    Returns:
        tuple[np.ndarray, np.ndarray]: the BGR ``uint8`` image (H, W, 3) and
        the ``uint8`` label map (H, W) of indices into :data:`CLASSES`.
    """
    h, w = img_size
    label, horizon = _draw_layout(rng, h, w)
    # Colour jitter per image keeps colour alone from being decisive.
    colors = np.zeros((len(CLASSES), 3), np.float32)
    luminance = np.zeros((h, w), np.float32)
    for cls in np.unique(label).tolist():
        colors[cls] = np.asarray(_BASE_RGB[cls]) + rng.uniform(-15, 15, 3)
        texture = _texture(cls, rng, (h, w), horizon)
        np.copyto(
            luminance, np.broadcast_to(texture, (h, w)), where=label == cls
        )
    img = colors[label] + luminance[..., None]
    img += rng.standard_normal(img.shape, dtype=np.float32) * 2.0
    img *= rng.uniform(0.85, 1.15)  # per-image illumination
    img = np.clip(np.rint(img, out=img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[..., ::-1]), label


@DATASETS.register_module()
class ProceduralStreetDataset(BaseSegDataset):
    """Synthetic street scenes generated on demand, deterministic by seed.

    Eight classes (:data:`CLASSES`): sky, building, road, sidewalk,
    vegetation, car, pedestrian, pole; each with its own colour and texture
    (see the module docstring), objects at random positions and sizes.

    The dataset hands the pipeline already-loaded samples: each data info
    holds ``img`` (BGR ``uint8`` HxWx3), ``gt_seg_map`` (``uint8`` HxW),
    ``seg_fields``, ``img_shape``, ``ori_shape`` and a synthetic
    ``img_path`` / ``seg_map_path`` such as ``'procedural/000012'``. So the
    pipeline starts after loading, e.g.
    ``[RandomFlip, RandomDistortion, PackSegInputs]``.

    Args:
        num_samples (int): Number of samples. Defaults to 100.
        img_size (Sequence[int]): (height, width), each at least 16.
            Defaults to (96, 128).
        seed (int): Seed of the split; sample ``i`` is drawn from
            ``numpy.random.default_rng((seed, i))``. Defaults to 0.
        pipeline (list): Processing pipeline. Defaults to ().
        metainfo (dict, optional): ``classes`` may be a subset of
            :data:`CLASSES`; the others become ``ignore_index``.
        test_mode (bool): Defaults to False.
        lazy_init (bool): Defaults to False.
        indices (int | Sequence[int], optional): Keep only these samples
            (their content does not change). Defaults to None.
        serialize_data (bool): Defaults to True.
        max_refetch (int): Defaults to 1000.
        ignore_index (int): Label of dropped classes. Defaults to 255.
    """

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(
        self,
        num_samples: int = 100,
        img_size: Sequence[int] = (96, 128),
        seed: int = 0,
        pipeline: Sequence[Union[dict, Callable]] = (),
        metainfo: Optional[dict] = None,
        test_mode: bool = False,
        lazy_init: bool = False,
        indices: Optional[Union[int, Sequence[int]]] = None,
        serialize_data: bool = True,
        max_refetch: int = 1000,
        ignore_index: int = 255,
    ) -> None:
        if (
            isinstance(num_samples, bool)
            or not isinstance(num_samples, int)
            or num_samples < 1
        ):
            raise ValueError(
                f'num_samples must be a positive integer, got {num_samples!r}'
            )
        img_size = tuple(img_size)
        if len(img_size) != 2 or not all(
            isinstance(s, int) and s >= MIN_SIZE for s in img_size
        ):
            raise ValueError(
                'img_size must be (height, width), integers >= '
                f'{MIN_SIZE}, got {img_size!r}'
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(
                f'seed must be a non-negative integer, got {seed!r}'
            )
        self.num_samples = num_samples
        self.img_size = img_size
        self.seed = seed
        super().__init__(
            metainfo=metainfo,
            pipeline=list(pipeline),
            test_mode=test_mode,
            lazy_init=lazy_init,
            indices=indices,
            serialize_data=serialize_data,
            max_refetch=max_refetch,
            ignore_index=ignore_index,
        )
        self._lut = np.arange(256, dtype=np.uint8)
        for old_id, new_id in (self.label_map or {}).items():
            self._lut[old_id] = ignore_index if new_id == 255 else new_id

    def load_data_list(self) -> List[dict]:
        """One light data info per sample; pixels come in get_data_info.

        Returns:
            list[dict]: ``procedural_index``, paths and label settings.
        """
        return [
            dict(
                img_path=f'procedural/{i:06d}',
                seg_map_path=f'procedural/{i:06d}',
                procedural_index=i,
                reduce_zero_label=False,
                seg_fields=[],
            )
            for i in range(self.num_samples)
        ]

    def generate(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Image and label of sample ``index`` (before any class subset).

        Args:
            index (int): Sample number in ``[0, num_samples)``.

        Returns:
            tuple[np.ndarray, np.ndarray]: BGR image and label map.
        """
        if not 0 <= index < self.num_samples:
            raise IndexError(
                f'sample {index} is outside [0, {self.num_samples})'
            )
        rng = np.random.default_rng((self.seed, index))
        return render_street(rng, self.img_size)

    def get_data_info(self, idx: int) -> dict:
        """The data info of ``idx`` with its image and label generated.

        Args:
            idx (int): Index into the (possibly sliced) dataset.

        Returns:
            dict: Ready for a pipeline that starts after loading.
        """
        info = super().get_data_info(idx)
        img, gt = self.generate(info['procedural_index'])
        info.update(
            img=img,
            gt_seg_map=self._lut[gt],
            seg_fields=['gt_seg_map'],
            img_shape=img.shape[:2],
            ori_shape=img.shape[:2],
        )
        return info

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(num_samples={self.num_samples}, '
            f'img_size={self.img_size}, seed={self.seed})'
        )
