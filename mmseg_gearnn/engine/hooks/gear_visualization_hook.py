import math
import os.path as osp
from typing import Optional, Sequence

import cv2
import numpy as np
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS
from mmseg.structures import SegDataSample

from ...distortions import CLEAN

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.4
_IGNORE = 255  # drawn as nothing by SegLocalVisualizer


def caption_of(data_sample: SegDataSample) -> str:
    """``'<type> <level> | gear <id>'`` of one output: the distortion the
    input carried and the gear the model ran it on."""
    distortion = data_sample.metainfo.get('distortion') or {}
    dtype = distortion.get('type') or CLEAN
    text = dtype if dtype == CLEAN else f'{dtype} {distortion.get("level")}'
    gear = data_sample.metainfo.get('gear_routed')
    return text if gear is None else f'{text} | gear {gear}'


def _resized(pixels: PixelData, size) -> PixelData:
    data = pixels.data.float()[None]
    return PixelData(data=F.interpolate(data, size=size, mode='nearest')[0])


@HOOKS.register_module()
class GearVisualizationHook(SegVisualizationHook):
    """Draws each evaluated input as the model saw it: the distorted image
    of the data batch (not the clean file re-read from disk), with the
    prediction (and label) at that image's size and a caption naming the
    distortion type, level and the gear used.

    mmseg's :class:`SegVisualizationHook` re-reads ``img_path``: it draws
    the clean image under a prediction made on a distorted one, and fails
    for datasets without image files. ``tools/test.py --show-dir`` uses
    this hook instead.

    Args:
        draw (bool): whether to draw at all. Defaults to False.
        interval (int): draw every ``interval`` evaluation batches.
        show (bool): show each drawing in a window.
        wait_time (float): seconds each drawing is shown.
        out_dir (str, optional): write each drawing to
            ``out_dir/<image>[_<type>_<level>].png``; without it the
            visualizer's backends store them, as mmseg's hook does.
        draw_gt (bool): draw the label beside the prediction.
        backend_args (dict, optional): unused (no file is read); kept for
            the configs of mmseg's hook.
    """

    def __init__(
        self,
        draw: bool = False,
        interval: int = 50,
        show: bool = False,
        wait_time: float = 0.0,
        out_dir: Optional[str] = None,
        draw_gt: bool = True,
        backend_args: Optional[dict] = None,
    ) -> None:
        super().__init__(draw, interval, show, wait_time, backend_args)
        self.out_dir = out_dir
        self.draw_gt = draw_gt

    @staticmethod
    def _with_caption(image: np.ndarray, sample: SegDataSample, text: str):
        """The image enlarged until the caption fits, with the caption in a
        band above it; the sample's maps resized and padded to match."""
        (text_w, text_h), base = cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)
        h, w = image.shape[:2]
        zoom = max(1, math.ceil((text_w + 6) / w))
        if zoom > 1:
            image = cv2.resize(
                image, (w * zoom, h * zoom), interpolation=cv2.INTER_NEAREST
            )
        band = text_h + base + 6
        top = np.zeros((band, image.shape[1], 3), np.uint8)
        cv2.putText(
            top,
            text,
            (3, text_h + 3),
            _FONT,
            _FONT_SCALE,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        drawn = SegDataSample(metainfo=sample.metainfo)
        for key in ('pred_sem_seg', 'gt_sem_seg'):
            if key in sample:
                pixels = _resized(sample.get(key), (h * zoom, w * zoom))
                data = F.pad(pixels.data, (0, 0, band, 0), value=_IGNORE)
                drawn.set_data({key: PixelData(data=data)})
        return np.concatenate([top, image]), drawn

    def _after_iter(
        self,
        runner,
        batch_idx: int,
        data_batch: dict,
        outputs: Sequence[SegDataSample],
        mode: str = 'val',
    ) -> None:
        if not self.draw or mode == 'train':
            return
        if not self.every_n_inner_iters(batch_idx, self.interval):
            return
        for image, output in zip(data_batch['inputs'], outputs):
            # The pipeline's image (BGR, as loaded) before normalisation.
            rgb = image.detach().cpu().permute(1, 2, 0).numpy()[..., ::-1]
            rgb = np.ascontiguousarray(rgb).astype(np.uint8)
            text = caption_of(output)
            drawn_image, drawn = self._with_caption(rgb, output, text)
            name = osp.splitext(osp.basename(output.img_path))[0]
            distortion = output.metainfo.get('distortion') or {}
            if (distortion.get('type') or CLEAN) != CLEAN:
                name = f'{name}_{distortion["type"]}_{distortion["level"]}'
            out_file = None
            if self.out_dir is not None:
                out_file = osp.join(self.out_dir, f'{name}.png')
            self._visualizer.add_datasample(
                f'{mode}_{name}',
                drawn_image,
                data_sample=drawn,
                draw_gt=self.draw_gt,
                show=self.show,
                wait_time=self.wait_time,
                out_file=out_file,
                step=runner.iter,
            )
