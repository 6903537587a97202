"""Stability training (Zheng, Song, Leung and Goodfellow, CVPR 2016) for
any mmseg segmentor: the one-model-for-all-levels baseline of GearNN."""

from contextlib import contextmanager
from typing import List, Tuple

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptSampleList, SampleList
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from .paired_frames import paired_batch, pixel_kl
from .wrapper import SegmentorWrapper

# The metainfo key that carries the distorted copy (see PairedDistortion).
DISTORTED_IMG = 'distorted_img'


@MODELS.register_module()
class StabilitySegmentor(SegmentorWrapper):
    """Wraps any mmseg segmentor with the stability-training loss

    ``L = L_task(x) + alpha * mean_valid_pixels KL(p(x) || p(x'))``

    where ``x'`` is a distorted copy of the clean image ``x``, ``p`` the
    per-pixel softmax of the segmentor's logits at label resolution, and
    the valid pixels those whose label is not the decode head's
    ``ignore_index``. At inference (``predict``, ``tensor``) it is the
    wrapped segmentor unchanged: one model for all distortion levels.

    1. Where ``x'`` comes from: :class:`PairedDistortion` in the training
    pipeline keeps ``img`` clean and adds its distorted copy (uint8, same
    size, made by the distortion kernels of the same distortion space);
    ``PackSegInputs`` carries it in ``metainfo['distorted_img']`` (list the
    key in its ``meta_keys``). The data preprocessor prepares the clean
    batch as usual; :meth:`loss` runs that same preprocessor, in training
    mode, on the copies, so both get the same channel order, mean/std
    normalisation and padding. The stock ``SegDataPreProcessor`` works
    unchanged and inference pipelines need nothing new.

    2. The ``loss`` call flow:

    .. code:: text

     loss(x, data_samples)
      ├─ x' = data_preprocessor(metainfo['distorted_img'])
      ├─ no_grad, BN running stats restored after it:
      │     p(x)  = softmax(encode_decode(x))    the target
      ├─ segmentor.loss(x, data_samples)        task loss on the clean x only
      ├─ p(x') = softmax(encode_decode(x'))      gradients flow here
      └─ loss_stability = alpha * KL(p(x) || p(x')), mean over valid pixels

    Design choices:

    - ``p(x)`` is a target: it is computed without gradient, so the
      stability term pulls the distorted prediction toward the clean one and
      never the clean prediction toward the distorted one; the clean
      prediction learns from the task loss alone.
    - The target pass is one extra forward pass, kept generic (any
      segmentor, auxiliary heads included, through ``segmentor.loss`` and
      ``encode_decode``). It runs in the model's current mode (batch
      statistics in training, as the task-loss pass) but restores the BN
      running statistics after it, so that each step updates them once
      with the clean batch and once with the distorted batch.
    - Dropout draws a new mask in each pass, so with dropout the term is not
      exactly zero even for ``x' == x``.
    - No valid pixel in the batch: the term is 0 (finite, zero gradient).

    Args:
        segmentor (dict): config of the wrapped mmseg segmentor.
        alpha (float): weight of the stability term (>= 0). 1.0 weighs a
            pixel's KL like its cross-entropy; a hyperparameter to tune,
            not a tuned value.
        data_preprocessor (dict, optional): defaults to the segmentor's.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(
        self,
        segmentor: ConfigType,
        alpha: float = 1.0,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptConfigType = None,
    ) -> None:
        if not alpha >= 0:
            raise ValueError(f'alpha must be >= 0, got {alpha}')
        super().__init__(
            segmentor, data_preprocessor=data_preprocessor, init_cfg=init_cfg
        )
        if getattr(self.data_preprocessor, 'batch_augments', None):
            raise ValueError(
                'StabilitySegmentor does not support batch_augments: the '
                'clean and distorted copies would be augmented differently'
            )
        self.alpha = float(alpha)

    # -- training ----------------------------------------------------------
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Task loss on the clean inputs plus ``loss_stability``."""
        distorted = self.distorted_inputs(inputs, data_samples)
        labels = torch.stack(
            [s.gt_sem_seg.data.squeeze(0) for s in data_samples]
        )
        size = tuple(inputs.shape[-2:])
        # encode_decode resizes to pad_shape; the padded size is the label
        # size (the metainfo img_shape after stack_batch is not).
        metas = [dict(img_shape=size, pad_shape=size)] * inputs.shape[0]
        # The target first: restoring the BN statistics in place after a
        # pass that autograd recorded would invalidate its graph.
        with torch.no_grad(), self._bn_running_stats_kept():
            target = self._logits(inputs, metas, labels.shape[-2:])
        losses = self.segmentor.loss(inputs, data_samples)
        logits = self._logits(distorted, metas, labels.shape[-2:])
        ignore_index = self.ignore_index
        if ignore_index is None:
            valid = torch.ones_like(labels, dtype=torch.bool)
        else:
            valid = labels != ignore_index
        losses['loss_stability'] = self.alpha * pixel_kl(target, logits, valid)
        return losses

    def distorted_inputs(
        self, inputs: Tensor, data_samples: SampleList
    ) -> Tensor:
        """The batch of distorted copies, prepared as the clean ``inputs``
        (same preprocessor, training mode)."""
        return paired_batch(
            self.data_preprocessor,
            data_samples,
            DISTORTED_IMG,
            inputs,
            copy='distorted copy',
            step='PairedDistortion',
        )

    def _logits(self, inputs: Tensor, metas: List[dict], size) -> Tensor:
        logits = self.segmentor.encode_decode(inputs, metas)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(
                logits,
                size=tuple(size),
                mode='bilinear',
                align_corners=self.align_corners,
            )
        return logits

    @contextmanager
    def _bn_running_stats_kept(self):
        """Restores every BN layer's running statistics on exit."""
        saved: List[Tuple[_BatchNorm, Tuple[Tensor, ...]]] = [
            (
                m,
                (
                    m.running_mean.clone(),
                    m.running_var.clone(),
                    m.num_batches_tracked.clone(),
                ),
            )
            for m in self.segmentor.modules()
            if isinstance(m, _BatchNorm)
            and m.training
            and m.track_running_stats
        ]
        try:
            yield
        finally:
            with torch.no_grad():
                for m, (mean, var, count) in saved:
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    m.num_batches_tracked.copy_(count)

    # -- inference: the wrapped segmentor ----------------------------------
    def predict(
        self, inputs: Tensor, data_samples: OptSampleList = None
    ) -> SampleList:
        return self.segmentor.predict(inputs, data_samples)
