"""Loading transforms that fail loudly, naming the file at fault.

mmcv's decoders return ``None`` for an undecodable file (cv2) or raise an
error that does not name it (pillow), and mmseg casts label maps to
``uint8`` without looking at their values. These subclasses check every
file they read: a missing file raises :class:`FileNotFoundError`, a corrupt
or truncated one raises :class:`ValueError`, and a label map with values
outside ``[0, num_classes)`` (other than the ignore index, after label
mapping) raises :class:`ValueError` naming the file and the bad values.

With ``on_error='skip'`` (``tools/test.py --skip-bad-files`` sets it) a bad
file does not stop an evaluation: the sample is kept with a blank
placeholder image and a label map that is all ignore index, so that it adds
no pixel to any IoU metric, and ``results['skipped']`` records the file and
the reason (:class:`~mmseg_gearnn.engine.SkippedFilesHook` reports them).
"""

import warnings
from typing import Optional

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS

# How many offending values an error message lists at most.
_MAX_LISTED = 10
# (h, w) of the image that stands in for one that cannot be read.
PLACEHOLDER_SIZE = (64, 64)
ON_ERROR = ('raise', 'skip')


class BadFileError(ValueError):
    """A missing, corrupt or out-of-range image or label file."""


class MissingFileError(BadFileError, FileNotFoundError):
    """An image or label file that does not exist."""


def _check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ValueError(
            f'on_error must be one of {ON_ERROR}, got {on_error!r}'
        )
    return on_error


def _record_skip(results: dict, path: str, err: Exception) -> None:
    warnings.warn(f'skipped (on_error="skip"): {err}')
    results['skipped'] = dict(path=str(path), reason=str(err))


def _read_bytes(path: str, what: str, backend_args: Optional[dict]) -> bytes:
    """The bytes of ``path``; FileNotFoundError naming it if absent."""
    try:
        data = fileio.get(path, backend_args=backend_args)
    except FileNotFoundError as e:
        raise MissingFileError(f'{what} file not found: {path}') from e
    if not data:
        raise BadFileError(f'{what} file is empty: {path}')
    return data


def _decode(
    data: bytes, path: str, what: str, flag: str, backend: str
) -> np.ndarray:
    """Decode image bytes; ValueError naming ``path`` if they are corrupt."""
    try:
        img = mmcv.imfrombytes(data, flag=flag, backend=backend)
    except Exception as e:  # decoders raise many unrelated types
        raise BadFileError(
            f'{what} file is corrupt or truncated: {path} '
            f'({type(e).__name__}: {e})'
        ) from e
    if img is None or img.size == 0:
        raise BadFileError(f'{what} file is corrupt or truncated: {path}')
    return img


@TRANSFORMS.register_module()
class LoadCheckedImageFromFile(LoadImageFromFile):
    """Load an image from file, raising a clear error for a bad file.

    Like :class:`mmcv.transforms.LoadImageFromFile`, but a missing file
    raises :class:`FileNotFoundError` and a corrupt or truncated one raises
    :class:`ValueError`, both naming the file (unless ``ignore_empty``, which
    returns None as mmcv does).

    Required Keys:

    - img_path

    Modified Keys:

    - img
    - img_shape
    - ori_shape

    Args:
        to_float32 (bool): Convert the image to float32. Defaults to False.
        color_type (str): The flag for :func:`mmcv.imfrombytes`.
            Defaults to 'color'.
        imdecode_backend (str): The decoding backend for
            :func:`mmcv.imfrombytes`. Defaults to 'cv2'.
        ignore_empty (bool): Return None instead of raising for a missing
            or corrupt file. Defaults to False.
        backend_args (dict, optional): Arguments to instantiate the file
            backend. Defaults to None.
        on_error (str): ``'raise'``, or ``'skip'``: for a missing or
            corrupt file, put a blank image in its place (the size of the
            last image loaded, else ``PLACEHOLDER_SIZE``) and record the
            file in ``results['skipped']`` (see the module docstring).
            Defaults to 'raise'.
    """

    def __init__(
        self,
        to_float32: bool = False,
        color_type: str = 'color',
        imdecode_backend: str = 'cv2',
        ignore_empty: bool = False,
        *,
        backend_args: Optional[dict] = None,
        on_error: str = 'raise',
    ) -> None:
        super().__init__(
            to_float32=to_float32,
            color_type=color_type,
            imdecode_backend=imdecode_backend,
            ignore_empty=ignore_empty,
            backend_args=backend_args,
        )
        self.on_error = _check_on_error(on_error)
        self._last_shape = PLACEHOLDER_SIZE

    def transform(self, results: dict) -> Optional[dict]:
        """Load the image of ``results['img_path']``.

        Args:
            results (dict): Result dict with ``img_path``.

        Returns:
            dict | None: The results with the image added, or None for a
            bad file when ``ignore_empty`` is set.
        """
        filename = results['img_path']
        try:
            data = _read_bytes(filename, 'image', self.backend_args)
            img = _decode(
                data,
                filename,
                'image',
                self.color_type,
                self.imdecode_backend,
            )
        except BadFileError as err:
            if self.ignore_empty:
                return None
            if self.on_error != 'skip':
                raise
            _record_skip(results, filename, err)
            # The last good image's size, so that it batches with the others.
            img = np.zeros((*self._last_shape, 3), np.uint8)
        else:
            self._last_shape = img.shape[:2]
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}('
            f'ignore_empty={self.ignore_empty}, '
            f'on_error={self.on_error!r}, '
            f'to_float32={self.to_float32}, '
            f'color_type={self.color_type!r}, '
            f'imdecode_backend={self.imdecode_backend!r}, '
            f'backend_args={self.backend_args})'
        )


@TRANSFORMS.register_module()
class LoadCheckedAnnotations(LoadAnnotations):
    """Load a semantic label map, checking the file and its values.

    Like :class:`mmseg.datasets.transforms.LoadAnnotations` (zero-label
    reduction and ``label_map`` work the same), but:

    - a missing file raises :class:`FileNotFoundError` naming it;
    - a corrupt or truncated file, a multi-channel map or values that do not
      fit ``uint8`` raise :class:`ValueError` naming it;
    - after label mapping, values outside ``[0, num_classes)`` other than
      ``ignore_index`` raise :class:`ValueError` naming the file and the
      values;
    - a map whose size differs from the loaded image's (``ori_shape``)
      raises :class:`ValueError` naming the file.

    ``num_classes`` and ``ignore_index`` come from the arguments, else from
    the data info (datasets of this package, e.g. :class:`CamVidDataset`,
    record both there). Without a number of classes the range cannot be
    checked, and loading raises rather than skip the check silently.

    Required Keys:

    - seg_map_path
    - reduce_zero_label
    - label_map (optional)
    - num_classes (optional)
    - ignore_index (optional)
    - seg_fields (optional)

    Added Keys:

    - gt_seg_map (np.uint8)
    - seg_fields

    Args:
        num_classes (int, optional): Number of classes; valid labels are
            ``0 .. num_classes - 1``. Defaults to None: take it from
            ``results['num_classes']``.
        ignore_index (int, optional): The ignored label value. Defaults to
            None: ``results['ignore_index']`` if present, else 255.
        reduce_zero_label (bool, optional): As in mmseg's LoadAnnotations.
            Defaults to None (take the dataset's).
        imdecode_backend (str): The decoding backend. Defaults to 'pillow'.
        backend_args (dict, optional): Arguments to instantiate the file
            backend. Defaults to None.
        on_error (str): ``'raise'``, or ``'skip'``: for a missing, corrupt
            or out-of-range label file, or after an image skipped by
            :class:`LoadCheckedImageFromFile`, load a map that is all
            ignore index (the image's size) and record the file in
            ``results['skipped']``. Defaults to 'raise'.
    """

    def __init__(
        self,
        num_classes: Optional[int] = None,
        ignore_index: Optional[int] = None,
        reduce_zero_label: Optional[bool] = None,
        imdecode_backend: str = 'pillow',
        backend_args: Optional[dict] = None,
        on_error: str = 'raise',
    ) -> None:
        if num_classes is not None and (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, int)
            or not 1 <= num_classes <= 256
        ):
            raise ValueError(
                f'num_classes must be an integer in [1, 256], got '
                f'{num_classes!r}'
            )
        if ignore_index is not None and (
            isinstance(ignore_index, bool)
            or not isinstance(ignore_index, int)
            or not 0 <= ignore_index <= 255
        ):
            raise ValueError(
                f'ignore_index must be an integer in [0, 255], got '
                f'{ignore_index!r}'
            )
        super().__init__(
            reduce_zero_label=reduce_zero_label,
            backend_args=backend_args,
            imdecode_backend=imdecode_backend,
        )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.on_error = _check_on_error(on_error)

    def _load_seg_map(self, results: dict) -> None:
        """Load, map and check the label map of ``results['seg_map_path']``.

        Args:
            results (dict): Result dict with ``seg_map_path``.
        """
        path = results['seg_map_path']
        num_classes = self.num_classes
        if num_classes is None:
            num_classes = results.get('num_classes')
        if num_classes is None:
            raise ValueError(
                'LoadCheckedAnnotations cannot check the label range of '
                f'{path}: the number of classes is unknown. Give '
                'num_classes=... to the transform, or use a dataset that '
                "records 'num_classes' in its data info."
            )
        ignore_index = self.ignore_index
        if ignore_index is None:
            ignore_index = results.get('ignore_index', 255)

        if self.on_error == 'skip':
            try:
                gt = None
                if 'skipped' not in results:  # its image was readable
                    gt = self._read_checked(
                        path, num_classes, ignore_index, results
                    )
                    gt = self._check_shape(gt, path, results)
            except BadFileError as err:
                _record_skip(results, path, err)
            if gt is None:
                shape = results.get('ori_shape') or PLACEHOLDER_SIZE
                gt = np.full(tuple(shape[:2]), ignore_index, np.uint8)
        else:
            gt = self._read_checked(path, num_classes, ignore_index, results)
            gt = self._check_shape(gt, path, results)
        results['gt_seg_map'] = gt
        results.setdefault('seg_fields', []).append('gt_seg_map')

    def _read_checked(
        self, path: str, num_classes: int, ignore_index: int, results: dict
    ) -> np.ndarray:
        """The label map of ``path``, mapped, its values checked."""
        data = _read_bytes(path, 'label', self.backend_args)
        raw = _decode(data, path, 'label', 'unchanged', self.imdecode_backend)
        if raw.ndim == 3 and raw.shape[2] == 1:
            raw = raw[..., 0]
        if raw.ndim != 2:
            raise BadFileError(
                f'label file {path} has shape {raw.shape}: a label map must '
                'be single-channel (one class index per pixel), not a '
                'colour-coded image'
            )
        if not np.issubdtype(raw.dtype, np.integer):
            raise BadFileError(
                f'label file {path} holds {raw.dtype} values; class '
                'indices must be integers'
            )
        if raw.min() < 0 or raw.max() > 255:
            raise BadFileError(
                f'label file {path} holds values outside [0, 255] '
                f'(min {raw.min()}, max {raw.max()}); they do not fit uint8'
            )
        gt = self._map_labels(raw.astype(np.uint8), results)

        values = np.unique(gt)
        bad = values[(values >= num_classes) & (values != ignore_index)]
        if bad.size:
            listed = bad[:_MAX_LISTED].tolist()
            more = ''
            if bad.size > _MAX_LISTED:
                more = f' and {bad.size - _MAX_LISTED} more'
            raise BadFileError(
                f'label file {path} holds values {listed}{more} outside '
                f'[0, {num_classes}) that are not the ignore index '
                f'{ignore_index} (after label mapping)'
            )
        return gt

    @staticmethod
    def _check_shape(gt: np.ndarray, path: str, results: dict) -> np.ndarray:
        ori_shape = results.get('ori_shape')
        if ori_shape is not None and tuple(ori_shape[:2]) != gt.shape:
            raise BadFileError(
                f'label file {path} is {gt.shape[0]}x{gt.shape[1]} but its '
                f'image {results.get("img_path")} is '
                f'{ori_shape[0]}x{ori_shape[1]}'
            )
        return gt

    def _map_labels(self, gt: np.ndarray, results: dict) -> np.ndarray:
        """Zero-label reduction and ``label_map``, as mmseg does them."""
        if self.reduce_zero_label is None:
            self.reduce_zero_label = results['reduce_zero_label']
        if self.reduce_zero_label != results['reduce_zero_label']:
            raise ValueError(
                'the dataset was built with reduce_zero_label='
                f'{results["reduce_zero_label"]} but LoadCheckedAnnotations '
                f'has reduce_zero_label={self.reduce_zero_label}'
            )
        if self.reduce_zero_label:
            gt = gt.copy()
            gt[gt == 0] = 255
            gt = gt - 1
            gt[gt == 254] = 255
        label_map = results.get('label_map')
        if label_map:
            lut = np.arange(256, dtype=np.uint8)
            for old_id, new_id in label_map.items():
                lut[old_id] = new_id
            gt = lut[gt]
        return gt

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}('
            f'num_classes={self.num_classes}, '
            f'ignore_index={self.ignore_index}, '
            f'reduce_zero_label={self.reduce_zero_label}, '
            f'on_error={self.on_error!r}, '
            f'imdecode_backend={self.imdecode_backend!r}, '
            f'backend_args={self.backend_args})'
        )
