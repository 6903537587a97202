"""CamVid, the 11-class 480x360 version distributed with SegNet."""

import os.path as osp
from typing import Dict, List

import mmengine.fileio as fileio
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

# How many missing label files an error message lists at most.
_MAX_LISTED = 5


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """CamVid street scenes: 11 classes, plus an unlabelled value 11.

    Layout under ``data_root`` (images and labels share file names)::

        train/*.png   trainannot/*.png
        val/*.png     valannot/*.png

    Labels are single-channel PNGs of class indices 0..10; the value 11
    (unlabelled) is mapped to ``ignore_index`` (255 by default), which
    mmseg's losses and ``IoUMetric`` ignore. Each data info also records
    ``num_classes`` and ``ignore_index`` so that
    :class:`LoadCheckedAnnotations` can check label ranges without repeating
    them in the pipeline.

    Args:
        img_suffix (str): Suffix of images. Defaults to '.png'.
        seg_map_suffix (str): Suffix of label maps. Defaults to '.png'.
        **kwargs: Passed to :class:`mmseg.datasets.BaseSegDataset`, e.g.
            ``data_root``, ``data_prefix``, ``pipeline``, ``metainfo``
            (``classes`` may be a subset; the others become ignored).
    """

    METAINFO = dict(
        classes=(
            'sky',
            'building',
            'pole',
            'road',
            'sidewalk',
            'tree',
            'sign_symbol',
            'fence',
            'car',
            'pedestrian',
            'bicyclist',
        ),
        palette=[
            [128, 128, 128],
            [128, 0, 0],
            [192, 192, 128],
            [128, 64, 128],
            [60, 40, 222],
            [128, 128, 0],
            [192, 128, 128],
            [64, 64, 128],
            [64, 0, 128],
            [64, 64, 0],
            [0, 128, 192],
        ],
    )
    # The raw label value of unlabelled pixels.
    UNLABELLED = 11

    def __init__(
        self,
        img_suffix: str = '.png',
        seg_map_suffix: str = '.png',
        **kwargs,
    ) -> None:
        if kwargs.get('reduce_zero_label'):
            raise ValueError(
                'CamVidDataset does not support reduce_zero_label=True: '
                'label 0 is sky, a real class, not background'
            )
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs
        )

    def _raw_label_map(self) -> Dict[int, int]:
        """Raw label value -> training label, for the values that change.

        mmseg's class-subset map sends dropped classes to 255; they go to
        ``ignore_index`` here, like the unlabelled value.
        """
        label_map = {
            old: self.ignore_index if new == 255 else new
            for old, new in (self.label_map or {}).items()
        }
        label_map[self.UNLABELLED] = self.ignore_index
        return {old: new for old, new in label_map.items() if old != new}

    def load_data_list(self) -> List[dict]:
        """Pair every image with its label map, checking the folders.

        Returns:
            list[dict]: One data info per image, sorted by path.

        Raises:
            FileNotFoundError: An image or label folder is missing, holds no
                images, or images lack their label files.
        """
        img_dir = self.data_prefix.get('img_path', '')
        ann_dir = self.data_prefix.get('seg_map_path')
        if not self.ann_file:
            for folder in (img_dir, ann_dir):
                if folder is not None and not fileio.isdir(
                    folder, backend_args=self.backend_args
                ):
                    raise FileNotFoundError(
                        f'CamVid folder not found: {folder} (check '
                        'data_root and data_prefix; CamVid needs '
                        'train/, trainannot/, val/, valannot/)'
                    )
        data_list = super().load_data_list()
        if not data_list:
            raise FileNotFoundError(
                f'no *{self.img_suffix} images found in {img_dir}'
            )
        if ann_dir is not None:
            missing = [
                info['seg_map_path']
                for info in data_list
                if not fileio.exists(
                    info['seg_map_path'], backend_args=self.backend_args
                )
            ]
            if missing:
                raise FileNotFoundError(
                    f'{len(missing)} of {len(data_list)} images in {img_dir} '
                    f'have no label file, e.g. '
                    f'{[osp.basename(m) for m in missing[:_MAX_LISTED]]} '
                    f'missing from {ann_dir}'
                )
        label_map = self._raw_label_map()
        num_classes = len(self._metainfo['classes'])
        for info in data_list:
            info['label_map'] = label_map
            info['num_classes'] = num_classes
            info['ignore_index'] = self.ignore_index
        return data_list
