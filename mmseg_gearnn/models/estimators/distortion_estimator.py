"""Estimate an image's gear (distortion type and level) from its pixels.

GearNN switches gears by the input's distortion level; when the caller has
no metadata (JPEG quality, exposure, resolution), this estimator reads it
from the image: hand-made statistics (:mod:`.features`), standardised, then
a small classifier over the gears of a :class:`DistortionSpace`.
"""

import io
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from mmseg.registry import MODELS
from torch import Tensor, nn

from ...distortions import DistortionSpace, build_space
from .features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    MIN_SIZE,
    NUM_FEATURES,
    batch_features,
    check_image,
    crop,
    crop_box,
)

ImageBatch = Union[np.ndarray, Tensor, Sequence[Union[np.ndarray, Tensor]]]

#: Version of the saved layout (extra state and file payload).
FORMAT_VERSION = 1
_CHANNEL_ORDERS = ('bgr', 'rgb')


@MODELS.register_module()
class DistortionEstimator(nn.Module):
    """Predicts the gear of a distortion space from the image alone.

    .. code:: text

     predict_gears(images)            uint8 BGR arrays or 0-255 tensors
      └─ to uint8 HxWx3 BGR           (checks dtype, shape and range)
      └─ image_features, per image     numpy / OpenCV, on the CPU
      └─ forward(features)             standardise, MLP -> gear logits
      └─ argmax                        LongTensor of gear ids (CPU)

    The estimator is tied to the distortion space it was trained for: the
    space, the feature definitions and the architecture travel in the state
    dict (as plain-container extra state), and loading it into an estimator
    built for another space, or with other features, raises a
    :class:`ValueError` that shows both.

    Train it with :func:`mmseg_gearnn.apis.estimator.train_estimator` (or
    ``tools/train_estimator.py``), on images of the size and kind it will
    see: the statistics are per pixel, so an estimator trained at 96x128
    is not calibrated for 720p frames.

    Args:
        space (dict | DistortionSpace): the distortion space (gear table).
        hidden_channels (int): width of the MLP's hidden layer; 0 makes the
            classifier a multinomial logistic regression. Defaults to 32.
        max_side (int): features come from a grid-aligned centre crop of at
            most ``max_side`` x ``max_side`` pixels (0: the whole image),
            which bounds the cost on large frames. Defaults to 256.
    """

    def __init__(
        self,
        space: Union[dict, DistortionSpace],
        hidden_channels: int = 32,
        max_side: int = 256,
    ) -> None:
        super().__init__()
        for name, value in (
            ('hidden_channels', hidden_channels),
            ('max_side', max_side),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f'{name} must be an int, got {value!r}')
            if value < 0:
                raise ValueError(f'{name} must be >= 0, got {value}')
        if 0 < max_side < 16:
            raise ValueError(
                f'max_side must be 0 (no crop) or at least 16, got {max_side}'
            )
        self.space = build_space(space)
        self.hidden_channels = hidden_channels
        self.max_side = max_side
        num_gears = self.space.num_gears
        if hidden_channels:
            self.classifier = nn.Sequential(
                nn.Linear(NUM_FEATURES, hidden_channels),
                nn.ReLU(inplace=True),
                nn.Linear(hidden_channels, num_gears),
            )
        else:
            self.classifier = nn.Sequential(nn.Linear(NUM_FEATURES, num_gears))
        self.register_buffer('feature_mean', torch.zeros(NUM_FEATURES))
        self.register_buffer('feature_std', torch.ones(NUM_FEATURES))
        # Set by training and by loading a trained state; predicting with
        # random weights raises instead of routing inputs at random.
        self.register_buffer('fitted', torch.tensor(False))
        # Checks a loaded state before any tensor of it is copied in.
        self.register_load_state_dict_pre_hook(_check_state_pre_hook)

    # -- the model ---------------------------------------------------------
    @property
    def num_gears(self) -> int:
        return self.space.num_gears

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def forward(self, features: Tensor) -> Tensor:
        """Gear logits of raw (unstandardised) feature vectors.

        Args:
            features (Tensor): (N, D) float, from
                :func:`~.features.batch_features`.

        Returns:
            Tensor: (N, num_gears) logits.
        """
        if features.ndim != 2 or features.shape[1] != NUM_FEATURES:
            raise ValueError(
                f'features must have shape (N, {NUM_FEATURES}), got '
                f'{tuple(features.shape)}'
            )
        x = (features - self.feature_mean) / self.feature_std
        return self.classifier(x)

    def set_standardization(self, mean: Tensor, std: Tensor) -> None:
        """Store the training features' per-feature mean and std."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != NUM_FEATURES or std.numel() != NUM_FEATURES:
            raise ValueError(
                f'mean and std need {NUM_FEATURES} values, got '
                f'{mean.numel()} and {std.numel()}'
            )
        if not bool((std > 0).all()):
            raise ValueError('every feature std must be > 0')
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def mark_fitted(self, fitted: bool = True) -> None:
        self.fitted.fill_(bool(fitted))

    # -- prediction --------------------------------------------------------
    def features(
        self, images: ImageBatch, channel_order: str = 'bgr'
    ) -> Tensor:
        """(N, D) float32 CPU features of a batch (see
        :meth:`predict_gears` for the accepted inputs)."""
        arrays = to_bgr_uint8(images, channel_order, self.max_side)
        return torch.from_numpy(batch_features(arrays))

    @torch.no_grad()
    def predict_proba(
        self, images: ImageBatch, channel_order: str = 'bgr'
    ) -> Tensor:
        """Gear probabilities of a batch; (N, num_gears) float32, CPU.

        Args and inputs as in :meth:`predict_gears`.
        """
        self.check_fitted()
        feats = self.features(images, channel_order)
        device = self.feature_mean.device
        logits = self(feats.to(device))
        return logits.softmax(dim=1).cpu()

    @torch.no_grad()
    def predict_gears(
        self, images: ImageBatch, channel_order: str = 'bgr'
    ) -> Tensor:
        """The most probable gear of each image.

        Args:
            images: one of

                - a uint8 ``(H, W, 3)`` numpy image, or a uint8
                  ``(N, H, W, 3)`` array, or a list of uint8 ``(H, W, 3)``
                  arrays (sizes may differ) — mmcv / OpenCV layout;
                - a ``(N, 3, H, W)`` or ``(3, H, W)`` tensor, or a list of
                  ``(3, H, W)`` tensors, uint8 or floating point with pixel
                  values on the 0-255 scale (what mmseg's data loader
                  yields before the data preprocessor). A normalised tensor
                  must be de-normalised first (``x * std + mean``, and drop
                  any padding): values outside [-0.5, 255.5] raise.

                Floating point values are rounded to uint8; the features
                are defined on 8-bit images.
            channel_order (str): ``'bgr'`` (default: mmcv's loading and
                mmseg's inputs before ``bgr_to_rgb``) or ``'rgb'``
                (e.g. the output of a ``bgr_to_rgb`` data preprocessor,
                de-normalised).

        Returns:
            Tensor: (N,) int64 gear ids on the CPU; the gear's (type, level)
            is ``self.space.level_of(gear)``.
        """
        return self.predict_proba(images, channel_order).argmax(dim=1)

    def predict_distortions(
        self, images: ImageBatch, channel_order: str = 'bgr'
    ) -> List[dict]:
        """The ``distortion`` record (``type``, ``level``, ``gear``, as
        the distortion transforms write it) estimated for each image."""
        records = []
        for gear in self.predict_gears(images, channel_order).tolist():
            records.append(self.space.record(*self.space.level_of(gear)))
        return records

    def check_fitted(self) -> None:
        """RuntimeError unless trained (or loaded from a trained state)."""
        if not self.is_fitted:
            raise RuntimeError(
                'this DistortionEstimator is not trained: train it with '
                'mmseg_gearnn.apis.estimator.train_estimator (or '
                'tools/train_estimator.py) or load a trained one with '
                'DistortionEstimator.load(path)'
            )

    # -- the space it belongs to ---------------------------------------------
    def check_space(self, space: Union[dict, DistortionSpace]) -> None:
        """Raise ValueError unless ``space`` has the gear table (types,
        their order and levels) this estimator was trained for.

        Call it where the estimator meets a segmentor's gear table: gear
        ids mean nothing under another space. (``snap`` may differ: it does
        not change the table.)
        """
        space = build_space(space)
        if not _same_gears(space, self.space):
            raise ValueError(
                'the distortion estimator was trained for another '
                f'distortion space:\n  estimator: {self.space}\n'
                f'  expected:  {space}\nretrain it for this space '
                '(tools/train_estimator.py)'
            )

    def get_extra_state(self) -> Dict[str, Any]:
        """What the weights mean, in plain containers (weights-only safe)."""
        return dict(
            format_version=FORMAT_VERSION,
            feature_version=FEATURE_VERSION,
            feature_names=list(FEATURE_NAMES),
            distortion_space=self.space.to_dict(),
            hidden_channels=self.hidden_channels,
            max_side=self.max_side,
            input='uint8 HxWx3 BGR',
        )

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        """Check that a loaded state belongs to this estimator (the
        load pre-hook has already checked it; loading without the hook
        still checks here)."""
        _check_compatible(self, state)

    # -- files -------------------------------------------------------------
    def save(self, path: Union[str, os.PathLike]) -> str:
        """Write the state to ``path`` atomically (a temporary file, then
        ``os.replace``): tensors and plain containers only, so it loads with
        ``torch.load(weights_only=True)``.

        Returns:
            str: the path written.
        """
        from ...utils.io import atomic_write

        buffer = io.BytesIO()
        torch.save(
            dict(
                type=type(self).__name__,
                state_dict=dict(self.state_dict()),
            ),
            buffer,
        )
        return atomic_write(path, buffer.getvalue())

    @classmethod
    def load(
        cls,
        path: Union[str, os.PathLike],
        space: Optional[Union[dict, DistortionSpace]] = None,
        map_location: Union[str, torch.device] = 'cpu',
    ) -> 'DistortionEstimator':
        """An estimator from a file written by :meth:`save` (weights-only
        loading: the file cannot run code).

        Args:
            path (str): the file.
            space (dict | DistortionSpace, optional): if given, the space
                the estimator must have been trained for (ValueError else).
            map_location: passed to ``torch.load``. Defaults to 'cpu'.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f'distortion estimator file not found: {path}'
            )
        try:
            payload = torch.load(
                path, map_location=map_location, weights_only=True
            )
        except Exception as err:  # torch raises many types
            raise ValueError(
                f'{path} is not a readable distortion estimator file '
                f'({type(err).__name__}: {err})'
            ) from err
        state = (
            payload.get('state_dict') if isinstance(payload, dict) else None
        )
        extra = state.get('_extra_state') if isinstance(state, dict) else None
        if not isinstance(extra, dict) or 'distortion_space' not in extra:
            raise ValueError(
                f'{path} holds no DistortionEstimator state (write one with '
                'DistortionEstimator.save or tools/train_estimator.py)'
            )
        estimator = cls(
            extra['distortion_space'],
            hidden_channels=extra.get('hidden_channels', 32),
            max_side=extra.get('max_side', 0),
        )
        try:
            estimator.load_state_dict(state)
        except ValueError as err:
            raise ValueError(f'{path}: {err}') from err
        if space is not None:
            try:
                estimator.check_space(space)
            except ValueError as err:
                raise ValueError(f'{path}: {err}') from err
        return estimator.to(map_location)

    def extra_repr(self) -> str:
        return (
            f'space={self.space!r}, hidden_channels={self.hidden_channels}, '
            f'max_side={self.max_side}, fitted={self.is_fitted}'
        )


def _same_gears(a: DistortionSpace, b: DistortionSpace) -> bool:
    return a.gears() == b.gears()


def _check_state_pre_hook(
    module: DistortionEstimator, state_dict: dict, prefix: str, *args
) -> None:
    key = prefix + '_extra_state'
    if key in state_dict:
        _check_compatible(module, state_dict[key])


def _check_compatible(estimator: DistortionEstimator, state: Any) -> None:
    """ValueError unless ``state`` (extra state) fits ``estimator``."""
    if not isinstance(state, dict) or 'distortion_space' not in state:
        raise ValueError(
            'the state dict holds no DistortionEstimator extra state '
            f'(got {type(state).__name__})'
        )
    if state.get('format_version') != FORMAT_VERSION:
        raise ValueError(
            'the distortion estimator state has format version '
            f'{state.get("format_version")}; this code reads version '
            f'{FORMAT_VERSION}'
        )
    names = list(state.get('feature_names', ()))
    if state.get('feature_version') != FEATURE_VERSION or names != list(
        FEATURE_NAMES
    ):
        raise ValueError(
            'the distortion estimator was trained on other features '
            f'(version {state.get("feature_version")}, {len(names)} '
            f'features; this code computes version {FEATURE_VERSION}, '
            f'{NUM_FEATURES} features): retrain it'
        )
    saved = build_space(state['distortion_space'])
    if not _same_gears(saved, estimator.space):
        raise ValueError(
            'the distortion estimator state was trained for another '
            f'distortion space than this estimator is built for:\n'
            f'  state:     {saved}\n  estimator: {estimator.space}\n'
            "build the estimator for the state's space (or use "
            'DistortionEstimator.load(path)), or retrain it for this space'
        )
    for key in ('hidden_channels', 'max_side'):
        if state.get(key) != getattr(estimator, key):
            raise ValueError(
                f'the distortion estimator state has {key}='
                f'{state.get(key)} but this estimator has {key}='
                f'{getattr(estimator, key)}; build it with the same value '
                'or use DistortionEstimator.load(path)'
            )


def _tensor_to_uint8(t: Tensor, name: str, max_side: int) -> np.ndarray:
    """A (3, H, W) tensor on the 0-255 scale as a uint8 (H, W, 3) array,
    cropped to the feature crop first (converting the rest is wasted)."""
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(
            f'{name} must be a (3, H, W) tensor (or a batch (N, 3, H, W)), '
            f'got shape {tuple(t.shape)}'
        )
    if t.shape[1] < MIN_SIZE or t.shape[2] < MIN_SIZE:
        raise ValueError(
            f'{name} is {t.shape[1]}x{t.shape[2]}; the distortion '
            f'statistics need at least {MIN_SIZE}x{MIN_SIZE} pixels'
        )
    top, left, ch, cw = crop_box(t.shape[1], t.shape[2], max_side)
    t = t.detach()[:, top : top + ch, left : left + cw]
    if t.dtype == torch.uint8:
        return np.ascontiguousarray(t.permute(1, 2, 0).cpu().numpy())
    if not t.is_floating_point():
        raise TypeError(
            f'{name} must be a uint8 or floating point tensor, got {t.dtype}'
        )
    lo, hi = (float(v) for v in torch.aminmax(t))
    # NaN fails both comparisons; an infinity fails one.
    if not (lo >= -0.5 and hi <= 255.5):
        raise ValueError(
            f'{name} has values in [{lo:.3g}, {hi:.3g}]; the estimator '
            'expects finite pixels on the 0-255 scale: de-normalise first '
            '(x * std + mean)'
        )
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    planes = t.cpu().numpy()
    # Round to nearest (ties to even, as torch.round) and saturate to uint8
    # in one OpenCV pass per channel; values >= -0.5 lose nothing to abs.
    return cv2.merge([cv2.convertScaleAbs(plane) for plane in planes])


def denormalize_inputs(
    inputs: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    img_shapes: Optional[Sequence[Sequence[int]]] = None,
) -> List[Tensor]:
    """Undo a ``SegDataPreProcessor``: back to 0-255 pixels, padding cut.

    The preprocessor normalises (``(x - mean) / std``, after its optional
    ``bgr_to_rgb``) and then pads; this returns ``x * std + mean`` of each
    image cut to its ``img_shape`` (the size before padding, in
    ``data_sample.metainfo['img_shape']``), ready for
    :meth:`DistortionEstimator.predict_gears` with ``channel_order='rgb'``
    when the preprocessor had ``bgr_to_rgb=True`` (else ``'bgr'``).

    Args:
        inputs (Tensor): (N, 3, H, W) normalised batch.
        mean (Sequence[float]): the preprocessor's per-channel mean.
        std (Sequence[float]): the preprocessor's per-channel std.
        img_shapes (Sequence[Sequence[int]], optional): (h, w) of each
            image before padding; None keeps the whole batch.

    Returns:
        list[Tensor]: (3, h, w) float tensors on the 0-255 scale.
    """
    if inputs.ndim != 4 or inputs.shape[1] != 3:
        raise ValueError(
            f'inputs must be (N, 3, H, W), got {tuple(inputs.shape)}'
        )
    mean_t = torch.as_tensor(mean, dtype=inputs.dtype, device=inputs.device)
    std_t = torch.as_tensor(std, dtype=inputs.dtype, device=inputs.device)
    if mean_t.numel() != 3 or std_t.numel() != 3:
        raise ValueError('mean and std need 3 values each')
    if img_shapes is not None and len(img_shapes) != inputs.shape[0]:
        raise ValueError(
            f'{len(img_shapes)} img_shapes for {inputs.shape[0]} inputs'
        )
    out = []
    for i, x in enumerate(inputs):
        if img_shapes is not None:
            h, w = img_shapes[i][:2]
            x = x[:, :h, :w]
        out.append(x * std_t.view(3, 1, 1) + mean_t.view(3, 1, 1))
    return out


def to_bgr_uint8(
    images: ImageBatch, channel_order: str = 'bgr', max_side: int = 0
) -> List[np.ndarray]:
    """The images of any accepted batch form as uint8 (H, W, 3) BGR arrays.

    See :meth:`DistortionEstimator.predict_gears` for the accepted forms.
    With ``max_side`` > 0 each image is cut to its feature crop
    (:func:`~.features.crop_box`) before any conversion.

    Raises:
        TypeError: an unsupported container or dtype.
        ValueError: a wrong shape, a too small image, a value range that is
            not 0-255, or an unknown ``channel_order``.
    """
    if channel_order not in _CHANNEL_ORDERS:
        raise ValueError(
            f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}"
        )
    if isinstance(images, Tensor):
        if images.ndim == 4:
            items = list(images)
        elif images.ndim == 3:
            items = [images]
        else:
            raise ValueError(
                'an image tensor must be (N, 3, H, W) or (3, H, W), got '
                f'shape {tuple(images.shape)}'
            )
    elif isinstance(images, np.ndarray):
        if images.ndim == 4:
            items = list(images)
        elif images.ndim == 3:
            items = [images]
        else:
            raise ValueError(
                'a numpy image must be (H, W, 3) or a batch (N, H, W, 3), '
                f'got shape {images.shape}'
            )
    elif isinstance(images, (list, tuple)):
        items = list(images)
    else:
        raise TypeError(
            'images must be a numpy array, a tensor or a list of them, got '
            f'{type(images).__name__}'
        )
    out = []
    for i, item in enumerate(items):
        name = f'image {i}'
        if isinstance(item, Tensor):
            item = _tensor_to_uint8(item, name, max_side)
        check_image(item, name)
        item = crop(item, max_side)
        if channel_order == 'rgb':
            item = np.ascontiguousarray(item[..., ::-1])
        out.append(item)
    return out
