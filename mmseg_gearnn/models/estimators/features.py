"""Hand-made image statistics that reveal a distortion's type and level.

Each statistic targets one kernel of :mod:`mmseg_gearnn.distortions`:

- **brightness / contrast**: luminance mean, spread and percentiles (from
  the 256-bin histogram), clipped fractions, how many grey levels are used
  (a darkened image is quantised to few levels).
- **JPEG**: blockiness, the mean absolute difference across the 8-pixel
  block boundaries over that inside blocks, horizontally and vertically,
  on luminance; the same on a chroma difference at the 16-pixel grid of
  4:2:0 subsampling; the share of nearly flat 8x8 blocks; the mean
  magnitude and the share of (near) zero coefficients of the blocks' 8x8
  DCT in four frequency bands (quantisation zeroes the high bands first,
  and more of them as the quality drops).
- **Gaussian noise**: Immerkaer's fast noise estimate (the mean absolute
  response of a Laplacian-difference mask, zero on any linear ramp), over
  the whole image and its low percentiles over 8x8 blocks (flat regions
  give the noise floor); the residual against a 3x3 median.
- **resolution / blur**: the energy lost by a down- and up-sampling round
  trip at 1/2, 1/4 and 1/8 (relative to the image variance), the gradient
  energy over the spread, and the chroma-to-luma detail ratio.
- **colour**: mean chroma and relative saturation.

Everything is computed with OpenCV and numpy on the uint8 BGR image as it
arrives (no resizing: the statistics are per pixel, so an image is
compared at its own scale). Large images are analysed on a bounded number
of pixels: see :func:`image_features`'s ``max_side``. On a 2-core CPU
one 96x128 image takes about 0.5 ms, one 360x480 frame about 1.3 ms with
``max_side=256`` (2.7 ms whole).
"""

from typing import List, Sequence, Tuple

import cv2
import numpy as np

#: Smallest height and width the statistics are defined for (the 1/8
#: round trip and the 16-pixel chroma grid need at least 16 pixels).
MIN_SIZE = 16

#: Version of the feature definitions; an estimator trained with another
#: version refuses to load.
FEATURE_VERSION = 1

FEATURE_NAMES: Tuple[str, ...] = (
    # luminance (brightness, contrast)
    'lum_mean',
    'log_lum_mean',
    'log_lum_std',
    'log_lum_p01',
    'log_lum_p05',
    'log_lum_p50',
    'log_lum_p95',
    'log_lum_p99',
    'frac_dark',
    'frac_bright',
    'grey_levels_used',
    # colour
    'log_chroma_mean',
    'rel_saturation',
    # noise
    'log_noise_immerkaer',
    'log_noise_block_p10',
    'log_noise_block_p50',
    'log_median_residual',
    'log_noise_over_std',
    # detail (resolution, blur)
    'log_hf_loss_2',
    'log_hf_loss_4',
    'log_hf_loss_8',
    'log_grad_over_std',
    'log_grad',
    'log_chroma_detail_ratio',
    # JPEG
    'blockiness_h',
    'blockiness_v',
    'blockiness_max_phase',
    'chroma_blockiness',
    'frac_flat_blocks',
    'log_dct_band1',
    'log_dct_band2',
    'log_dct_band3',
    'log_dct_band4',
    'dct_zero_band1',
    'dct_zero_band2',
    'dct_zero_band3',
    'dct_zero_band4',
)

NUM_FEATURES = len(FEATURE_NAMES)

# Immerkaer (1996): the difference of two Laplacians; it cancels every
# linear ramp, and sigma = sqrt(pi / 2) / 6 * E|response| for white noise.
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_IMMERKAER_SCALE = float(np.sqrt(np.pi / 2) / 6)
_EPS = 1e-3
_LEVELS = np.arange(256, dtype=np.float64)
_LEVELS_SQ = _LEVELS**2


def _dct_matrix(n: int = 8) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


# The orthonormal 8x8 DCT-II (JPEG's transform) and its frequency bands by
# u + v: 1-2 (lowest AC), 3-5, 6-8, 9-14 (highest), as averaging rows.
_DCT8 = _dct_matrix()
_UV = np.add.outer(np.arange(8), np.arange(8)).ravel()
_DCT_BANDS = np.stack(
    [
        ((_UV >= lo) & (_UV <= hi)) / np.sum((_UV >= lo) & (_UV <= hi))
        for lo, hi in ((1, 2), (3, 5), (6, 8), (9, 14))
    ]
)  # (4, 64): each row averages one band


def check_image(img, name: str = 'image') -> None:
    """Raise a clear error unless ``img`` is a uint8 HxWx3 BGR image.

    Args:
        img: The candidate image.
        name (str): How the error message names it.

    Raises:
        TypeError: Not a numpy array, or not uint8.
        ValueError: Not HxWx3, or smaller than :data:`MIN_SIZE`.
    """
    if not isinstance(img, np.ndarray):
        raise TypeError(
            f'{name} must be a numpy uint8 HxWx3 BGR array, got '
            f'{type(img).__name__}'
        )
    if img.dtype != np.uint8:
        raise TypeError(
            f'{name} must be uint8 (0-255), got {img.dtype}; the '
            'statistics are defined on the raw 8-bit image'
        )
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f'{name} must have shape (H, W, 3) (BGR), got {img.shape}'
        )
    if img.shape[0] < MIN_SIZE or img.shape[1] < MIN_SIZE:
        raise ValueError(
            f'{name} is {img.shape[0]}x{img.shape[1]}; the distortion '
            f'statistics need at least {MIN_SIZE}x{MIN_SIZE} pixels'
        )


def _log(x: float) -> float:
    return float(np.log(x + _EPS))


def _mean(a: np.ndarray) -> float:
    """Mean of a single-channel array (OpenCV: faster than numpy)."""
    return cv2.mean(a)[0]


def _mean_sq_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference of two arrays of the same shape."""
    return cv2.norm(a, b, cv2.NORM_L2SQR) / a.size


def _half(a: np.ndarray) -> np.ndarray:
    """Area downsampling by 2 (each output pixel: a 2x2 block mean)."""
    h, w = a.shape
    return cv2.resize(a, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def _up(a: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    return cv2.resize(a, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _phase_sums(diff: np.ndarray, period: int) -> np.ndarray:
    """Sums of ``diff`` (abs differences along x, or along y transposed
    into a row of sums) per phase, the index modulo ``period``.

    Args:
        diff (np.ndarray): a (1, L) or (L, 1) array of column / row sums.
        period (int): the block size.
    """
    diff = diff.ravel().astype(np.float64)
    n = (diff.size // period) * period
    return diff[:n].reshape(-1, period).sum(axis=0)


def _blockiness(phases: np.ndarray) -> float:
    """Log ratio of the last phase (across a block boundary) to the mean
    of the others."""
    rest = (float(phases.sum()) - float(phases[-1])) / (phases.size - 1)
    return _log(float(phases[-1])) - _log(rest)


def _abs_diff_sums(a: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Column sums of |horizontal differences| and row sums of |vertical
    differences| of ``a``: shapes (1, W - 1) and (H - 1, 1)."""
    ddepth = cv2.CV_32S if a.dtype == np.uint8 else cv2.CV_64F
    dx = cv2.absdiff(a[:, 1:], a[:, :-1])
    dy = cv2.absdiff(a[1:], a[:-1])
    return (
        cv2.reduce(dx, 0, cv2.REDUCE_SUM, dtype=ddepth),
        cv2.reduce(dy, 1, cv2.REDUCE_SUM, dtype=ddepth),
    )


def crop_box(h: int, w: int, max_side: int) -> Tuple[int, int, int, int]:
    """(top, left, height, width) of the centre crop of at most
    ``max_side`` per side (0: the whole image) that the features use; its
    origin lies on the 16-pixel grid so that JPEG blocks (8) and chroma
    blocks (16) stay aligned."""
    if not max_side or (h <= max_side and w <= max_side):
        return 0, 0, h, w
    ch, cw = min(h, max_side), min(w, max_side)
    return ((h - ch) // 2) // 16 * 16, ((w - cw) // 2) // 16 * 16, ch, cw


def crop(img: np.ndarray, max_side: int) -> np.ndarray:
    """The :func:`crop_box` view of an (H, W, ...) image."""
    top, left, ch, cw = crop_box(img.shape[0], img.shape[1], max_side)
    return img[top : top + ch, left : left + cw]


def image_features(img: np.ndarray, max_side: int = 0) -> np.ndarray:
    """The :data:`FEATURE_NAMES` statistics of one image.

    Args:
        img (np.ndarray): uint8 HxWx3 BGR image, at least 16x16.
        max_side (int): If > 0, the statistics come from a centre crop of at
            most ``max_side`` x ``max_side`` pixels (grid-aligned), which
            bounds the cost on large frames. 0 (default) uses every pixel.

    Returns:
        np.ndarray: float32 vector of length :data:`NUM_FEATURES`.
    """
    check_image(img)
    img = crop(img, max_side)
    h, w = img.shape[:2]
    y8 = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    y = y8.astype(np.float32)
    feats: List[float] = []

    # -- luminance: one histogram gives mean, percentiles and occupancy.
    hist = np.bincount(y8.ravel(), minlength=256).astype(np.float64)
    cdf = np.cumsum(hist) / y8.size
    mean = float(hist @ _LEVELS) / y8.size
    var = max(float(hist @ _LEVELS_SQ) / y8.size - mean * mean, 0.0)
    std = var**0.5
    pct = np.searchsorted(cdf, (0.01, 0.05, 0.5, 0.95, 0.99))
    feats += [mean / 255.0, _log(mean), _log(std)]
    feats += np.log1p(pct).tolist()
    feats += [
        float(cdf[2]),
        float(1.0 - cdf[252]),
        float(np.count_nonzero(hist)) / 256.0,
    ]

    # -- colour: chroma = max - min over B, G, R.
    b, g, r = cv2.split(img)
    cmax = cv2.max(cv2.max(b, g), r)
    chroma_mean = _mean(cv2.subtract(cmax, cv2.min(cv2.min(b, g), r)))
    feats += [_log(chroma_mean), chroma_mean / (_mean(cmax) + 1.0)]

    # -- noise.
    lap = cv2.absdiff(cv2.filter2D(y, -1, _IMMERKAER), 0)[1:-1, 1:-1]
    sigma = _IMMERKAER_SCALE * _mean(lap)
    bh, bw = (h - 2) // 8, (w - 2) // 8
    blocks = cv2.resize(
        lap[: bh * 8, : bw * 8], (bw, bh), interpolation=cv2.INTER_AREA
    ).ravel()
    k10, k50 = int(0.1 * (blocks.size - 1)), int(0.5 * (blocks.size - 1))
    blocks = np.partition(blocks, (k10, k50))
    feats += [
        _log(sigma),
        _log(_IMMERKAER_SCALE * float(blocks[k10])),
        _log(_IMMERKAER_SCALE * float(blocks[k50])),
        0.5 * _log(_mean_sq_diff(y8, cv2.medianBlur(y8, 3))),
        _log(sigma) - _log(std),
    ]

    # -- detail: energy lost by a round trip through 1/2, 1/4, 1/8.
    small = y
    for _ in range(3):
        small = _half(small)
        feats.append(_log(_mean_sq_diff(y, _up(small, (h, w))) / (var + _EPS)))
    ysx, ysy = _abs_diff_sums(y8)
    grad = float(ysx.sum()) / (h * (w - 1)) + float(ysy.sum()) / ((h - 1) * w)
    feats += [_log(grad) - _log(std), _log(grad)]
    # A chroma difference: JPEG's 4:2:0 subsampling halves its detail.
    c = cv2.subtract(b, r, dtype=cv2.CV_32F)
    feats.append(
        _log(_mean_sq_diff(c, _up(_half(c), (h, w))))
        - _log(_mean_sq_diff(y, _up(_half(y), (h, w))))
    )

    # -- JPEG blocks (grid anchored at the image origin, as the codec's).
    ph, pv = _phase_sums(ysx, 8), _phase_sums(ysy, 8)
    phases = ph + pv
    top = float(phases.max())
    feats += [
        _blockiness(ph),
        _blockiness(pv),
        _log(top) - _log((float(phases.sum()) - top) / 7.0),
    ]
    csx, csy = _abs_diff_sums(c)
    feats.append(_blockiness(_phase_sums(csx, 16) + _phase_sums(csy, 16)))
    bh, bw = h // 8, w // 8
    yc = y[: bh * 8, : bw * 8]
    block_mean = cv2.resize(yc, (bw, bh), interpolation=cv2.INTER_AREA)
    block_sq = cv2.resize(yc * yc, (bw, bh), interpolation=cv2.INTER_AREA)
    feats.append(float(np.mean(block_sq - block_mean * block_mean < 1.0)))
    # The blocks' DCT: JPEG quantises each frequency with a step that grows
    # as the quality drops, and the high bands go to zero first.
    # 2-D DCT of every block as two batched products (along rows, then
    # along columns); ``coef`` is laid out (block row, u, block column, v).
    rows = np.matmul(_DCT8, yc.reshape(bh, 8, bw * 8))
    coef = np.abs(rows.reshape(bh * 8, bw, 8) @ _DCT8.T)
    coef = coef.reshape(bh, 8, bw, 8)
    n_blocks = float(bh * bw)
    mean_uv = coef.sum(axis=0).sum(axis=1).ravel() / n_blocks
    zero_uv = (coef < 1.0).sum(axis=0).sum(axis=1).ravel() / n_blocks
    feats += (np.log(_DCT_BANDS @ mean_uv + _EPS) - _log(std)).tolist()
    feats += (_DCT_BANDS @ zero_uv).tolist()

    out = np.asarray(feats, dtype=np.float32)
    if out.shape != (NUM_FEATURES,):  # a definition and its name drifted
        raise RuntimeError(
            f'computed {out.size} features for {NUM_FEATURES} names'
        )
    return out


def batch_features(
    images: Sequence[np.ndarray], max_side: int = 0
) -> np.ndarray:
    """:func:`image_features` of each image, stacked to (N, D) float32."""
    if len(images) == 0:
        return np.zeros((0, NUM_FEATURES), np.float32)
    return np.stack([image_features(img, max_side) for img in images])
