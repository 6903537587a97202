"""GearNN inference on frames as a camera delivers them: a folder of images,
one image, a video, or arrays.

The stages of mmseg's ``MMSegInferencer`` on mmengine's ``BaseInferencer``:

- :meth:`GearNNInferencer.preprocess`: the config's test pipeline, minus
  its distortion transform (the camera has distorted the frame already) and
  label loading, on batches of consecutive frames that share a gear and a
  size; each frame's distortion metadata goes into its sample;
- :meth:`GearNNInferencer.forward`: ``model.test_step``, which routes every
  sample to its gear and resizes the mask back to the frame's size;
- :meth:`GearNNInferencer.visualize`: overlays by mmseg's
  ``SegLocalVisualizer``;
- :meth:`GearNNInferencer.postprocess`: masks and per-frame records (frame
  name, gear, its (type, level), the routing source, the time taken).

So a frame runs at the resolution the model was evaluated at, through the
same transforms as in ``tools/test.py``, and gets the same prediction.
"""

import copy
import os
import os.path as osp
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.infer import BaseInferencer
from mmengine.registry import init_default_scope
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from ..utils.io import atomic_write
from .camera_pipeline import (
    camera_pipeline,
    test_pipeline_of,
    with_distortion_key,
)
from .frame_report import png_bytes, summarize, write_report
from .frames import FrameInput, FrameSource, MetadataType, metadata_lookup
from .model_init import init_gearnn_model


@dataclass
class FrameItem:
    """One frame on its way through the stages."""

    name: str
    path: str
    img: Optional[np.ndarray]
    distortion: Optional[dict] = None


Batch = Tuple[List[FrameItem], Optional[dict]]


class GearNNInferencer(BaseInferencer):
    """Segments frames with a :class:`GearNNSegmentor`, each on its gear.

    A frame comes as a camera delivers it, distorted already; its
    distortion metadata (``type``, ``level``), where known, routes it to a
    gear, else the model's routing policy does (the distortion estimator or
    the default gear). The config's test pipeline prepares it without its
    distortion transform (see :func:`camera_pipeline`); frames in a row
    that share a gear and a size run as one batch of up to ``batch_size``.

    Args:
        config (str | Config): a GearNN config; its ``custom_imports``
            loads the plugin.
        checkpoint (str, optional): the model's checkpoint.
        gears_file (str, optional): a compact gears file, loaded after the
            checkpoint.
        estimator (str, optional): a distortion estimator file; sets
            ``model.estimator``.
        routing (str, optional): ``'metadata'``, ``'estimate'`` or
            ``'checked'``; sets ``model.routing``.
        device (str): the torch device. Defaults to ``'cpu'``.
        cfg_options (dict, optional): overrides merged into the config.

    Example:
        >>> inferencer = GearNNInferencer(CONFIG, 'gearnn.pth')
        >>> summary = inferencer('frames/', 'out/', metadata='meta.json',
        ...                      batch_size=4, overlay=True)
    """

    preprocess_kwargs: set = {'metadata'}
    forward_kwargs: set = set()
    visualize_kwargs: set = {'opacity', 'with_labels'}
    postprocess_kwargs: set = {'out_dir'}

    def __init__(
        self,
        config: Union[str, os.PathLike, Config],
        checkpoint: Optional[str] = None,
        gears_file: Optional[str] = None,
        estimator: Optional[str] = None,
        routing: Optional[str] = None,
        device: str = 'cpu',
        cfg_options: Optional[dict] = None,
    ) -> None:
        cfg = (
            Config.fromfile(os.fspath(config))
            if isinstance(config, (str, os.PathLike))
            else copy.deepcopy(config)
        )
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        if estimator is not None:
            cfg.model.estimator = estimator
        if routing is not None:
            cfg.model.routing = routing
        scope = cfg.get('default_scope', 'mmseg')
        init_default_scope(scope)
        self._gears_file = gears_file
        super().__init__(
            model=cfg,
            weights=checkpoint,
            device=device,
            scope=scope,
            show_progress=False,
        )
        self.space = self.model.space
        self.dataset_meta = self.model.dataset_meta

    # -- initialisation (BaseInferencer's hooks) ----------------------------
    def _init_model(
        self, cfg: Config, weights: Optional[str], device: str = 'cpu'
    ) -> torch.nn.Module:
        return init_gearnn_model(cfg, weights, self._gears_file, device)

    def _init_pipeline(self, cfg: Config) -> Compose:
        """The config's test pipeline for camera frames (see
        :func:`camera_pipeline`), carrying ``'distortion'`` to the model."""
        steps = camera_pipeline(test_pipeline_of(cfg))
        return Compose(with_distortion_key(steps))

    def _init_collate(self, cfg: Config) -> Callable:
        """mmengine's ``pseudo_collate``, as the Runner's test dataloader
        (mmseg registers no collate functions of its own)."""
        return pseudo_collate

    def _init_visualizer(self, cfg: Config) -> SegLocalVisualizer:
        """mmseg's ``SegLocalVisualizer``, with the model's classes."""
        name = f'{type(self).__name__}-{datetime.now().timestamp()}'
        if SegLocalVisualizer.check_instance_created(name):
            name = f'{name}-{id(self)}'
        visualizer = SegLocalVisualizer(name=name)
        visualizer.set_dataset_meta(**self.model.dataset_meta)
        return visualizer

    # -- metadata --------------------------------------------------------
    def resolve_metadata(
        self, metadata: MetadataType, frames: FrameSource
    ) -> Callable[[int, str, str], Optional[dict]]:
        """Each frame's ``distortion`` record, every metadata entry checked
        against the model's space up front (see :func:`metadata_lookup`)."""
        return metadata_lookup(metadata, frames, self.space)

    # -- the stages --------------------------------------------------------
    def pack_frame(
        self,
        img: np.ndarray,
        name: str = '',
        distortion: Optional[dict] = None,
    ) -> dict:
        """One BGR frame through the pipeline: ``inputs`` and
        ``data_samples``, as a dataset item of ``tools/test.py``."""
        results = dict(img=img)
        if distortion is not None:
            results['distortion'] = dict(distortion)
        return self.pipeline(results)

    def preprocess(
        self,
        inputs: Union[FrameSource, FrameInput, Sequence[FrameInput]],
        batch_size: int = 1,
        metadata: MetadataType = None,
    ) -> Iterator[Batch]:
        """Batches of frames: ``(frames, data)`` with ``data`` ready for
        ``model.test_step`` (as mmdet's ``DetInferencer`` yields them).

        A batch holds consecutive frames of one gear (from their metadata;
        frames without it form their own batches, routed by the model) and
        one size, at most ``batch_size``. An unreadable frame comes alone,
        with ``data`` None.

        Raises:
            ValueError: ``batch_size`` is not a positive int, or the
                metadata names a type or level outside the space (before
                any frame is read).
        """
        if isinstance(batch_size, bool) or not (
            isinstance(batch_size, int) and batch_size >= 1
        ):
            raise ValueError(
                f'batch_size must be a positive int, got {batch_size!r}'
            )
        frames = (
            inputs if isinstance(inputs, FrameSource) else FrameSource(inputs)
        )
        lookup = self.resolve_metadata(metadata, frames)
        batch: List[FrameItem] = []
        key = None
        for index, (name, path, img) in enumerate(frames):
            if img is None:
                if batch:
                    yield batch, self._collate(batch)
                    batch = []
                yield [FrameItem(name, path, None)], None
                continue
            item = FrameItem(name, path, img, lookup(index, name, path))
            gear = None if item.distortion is None else item.distortion['gear']
            item_key = (gear, img.shape)
            if batch and (item_key != key or len(batch) == batch_size):
                yield batch, self._collate(batch)
                batch = []
            key = item_key
            batch.append(item)
        if batch:
            yield batch, self._collate(batch)

    def _collate(self, batch: List[FrameItem]) -> dict:
        return self.collate_fn(
            [self.pack_frame(f.img, f.name, f.distortion) for f in batch]
        )

    @torch.no_grad()
    def forward(self, inputs: dict) -> List[SegDataSample]:
        """``model.test_step``: routing, the gears' predictions, masks
        resized to the frames' sizes."""
        return self.model.test_step(inputs)

    def visualize(
        self,
        inputs: List[FrameItem],
        preds: List[SegDataSample],
        opacity: float = 0.5,
        with_labels: bool = False,
    ) -> List[np.ndarray]:
        """BGR overlays of the predictions by ``SegLocalVisualizer``."""
        self.visualizer.alpha = opacity
        overlays = []
        for frame, pred in zip(inputs, preds):
            self.visualizer.add_datasample(
                frame.name,
                np.ascontiguousarray(frame.img[..., ::-1]),
                pred,
                draw_gt=False,
                draw_pred=True,
                with_labels=with_labels,
            )
            overlays.append(self.visualizer.get_image()[..., ::-1])
        return overlays

    def postprocess(
        self,
        preds: List[SegDataSample],
        visualization: Optional[List[np.ndarray]],
        frames: List[FrameItem],
        out_dir: Optional[str] = None,
    ) -> List[Tuple[np.ndarray, dict]]:
        """Each frame's uint8 mask and record (``frame``, ``status``,
        ``gear``, ``type``, ``level``, ``source``); with ``out_dir``, writes
        ``masks/<name>.png`` and ``overlays/<name>.png`` atomically."""
        results = []
        for i, (frame, pred) in enumerate(zip(frames, preds)):
            mask = pred.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
            gear = int(pred.metainfo['gear_routed'])
            gear_type, level = self.space.level_of(gear)
            record = dict(
                frame=frame.name,
                status='ok',
                gear=gear,
                type=gear_type,
                level=level,
                source=pred.metainfo['gear_source'],
            )
            if out_dir is not None:
                atomic_write(
                    osp.join(out_dir, 'masks', f'{frame.name}.png'),
                    png_bytes(mask),
                )
                if visualization is not None:
                    atomic_write(
                        osp.join(out_dir, 'overlays', f'{frame.name}.png'),
                        png_bytes(visualization[i]),
                    )
            results.append((mask, record))
        return results

    def infer_frame(
        self, img: np.ndarray, name: str, distortion: Optional[dict] = None
    ) -> Tuple[np.ndarray, dict]:
        """Segments one BGR frame: its uint8 mask (the frame's size) and its
        record (with ``ms``, the time of the forward pass)."""
        frame = FrameItem(name, '', img, distortion)
        data = self._collate([frame])
        start = time.perf_counter()
        preds = self.forward(data)
        ms = (time.perf_counter() - start) * 1000.0
        (mask, record), *_ = self.postprocess(preds, None, [frame])
        record['ms'] = round(ms, 3)
        return mask, record

    # -- a whole input ---------------------------------------------------
    def __call__(
        self,
        inputs: Union[FrameInput, Sequence[FrameInput]],
        out_dir: Optional[Union[str, os.PathLike]] = None,
        metadata: MetadataType = None,
        batch_size: int = 1,
        overlay: bool = False,
        opacity: float = 0.5,
        with_labels: bool = False,
        return_datasamples: bool = False,
        on_frame: Optional[Callable[[dict], None]] = None,
    ) -> dict:
        """Segments every frame of ``inputs``.

        With ``out_dir``, writes ``masks/<name>.png`` (uint8 class ids),
        ``overlays/<name>.png`` (with ``overlay``), ``frames.json``
        (``summary`` and ``frames``) and ``frames.csv`` (one row per frame,
        skipped ones included), each atomically; without it, returns the
        predictions.

        Args:
            inputs (str | np.ndarray | list): an image folder, an image or a
                video file, a BGR array, or a list of them.
            out_dir (str, optional): the output folder.
            metadata (str | dict | list, optional): per-frame distortion
                metadata (see :func:`read_metadata`); frames without it are
                routed by the model's policy.
            batch_size (int): the most frames of one gear and size run
                together. Defaults to 1.
            overlay (bool): draw overlays (written to ``out_dir``, or
                returned under ``visualization``).
            opacity (float): the overlays' mask opacity.
            with_labels (bool): write class names on the overlays.
            return_datasamples (bool): return ``SegDataSample`` predictions
                instead of masks (without ``out_dir``).
            on_frame (callable, optional): called with each frame's record
                (skipped frames too), e.g. to print progress.

        Returns:
            dict: the summary (:func:`summarize`), the per-frame records
            under ``frames``, and without ``out_dir`` ``predictions`` (masks
            or data samples, in frame order) and ``visualization`` (BGR
            overlays, with ``overlay``).
        """
        out = None if out_dir is None else os.fspath(out_dir)
        records: List[dict] = []
        predictions: list = []
        visualization: List[np.ndarray] = []
        for frames, data in self.preprocess(inputs, batch_size, metadata):
            if data is None:
                frame = frames[0]
                warnings.warn(
                    f'cannot read frame {frame.name!r} ({frame.path}): skipped'
                )
                batch_records = [
                    dict(
                        frame=frame.name,
                        status='skipped',
                        reason='unreadable image',
                    )
                ]
            else:
                start = time.perf_counter()
                preds = self.forward(data)
                ms = (time.perf_counter() - start) * 1000.0 / len(frames)
                vis = (
                    self.visualize(frames, preds, opacity, with_labels)
                    if overlay
                    else None
                )
                results = self.postprocess(preds, vis, frames, out)
                batch_records = [r for _, r in results]
                for record in batch_records:
                    record['ms'] = round(ms, 3)
                if out is None:
                    predictions.extend(
                        preds
                        if return_datasamples
                        else [mask for mask, _ in results]
                    )
                    visualization.extend(vis or [])
            for record in batch_records:
                records.append(record)
                if on_frame is not None:
                    on_frame(record)
        summary = summarize(records)
        if out is not None:
            write_report(out, summary, records)
            return dict(summary, frames=records)
        return dict(
            summary,
            frames=records,
            predictions=predictions,
            visualization=visualization,
        )
