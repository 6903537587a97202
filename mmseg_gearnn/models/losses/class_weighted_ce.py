"""Cross-entropy with per-class weights that tolerates ignored pixels.

mmseg 1.x's ``CrossEntropyLoss(class_weight=...)`` looks up every label,
ignored ones included, in the weight table, so a label map holding
``ignore_index`` (255) fails with an IndexError
(open-mmlab/mmsegmentation#3734). This loss leaves ignored pixels to
PyTorch's ``cross_entropy``, which skips them.
"""

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class ClassWeightedCrossEntropyLoss(nn.Module):
    """Softmax cross-entropy, each pixel weighted by its class's weight.

    The loss is ``sum_p w[y_p] * ce_p / sum_p w[y_p]`` over the pixels ``p``
    whose label is not ``ignore_index`` (PyTorch's weighted mean), times
    ``loss_weight``. With no valid pixel it is a zero that still depends
    on the logits.

    Args:
        class_weight (Sequence[float]): one non-negative weight per class,
            e.g. median frequency balancing of the training labels.
        loss_weight (float): scale of the loss. Defaults to 1.0.
        loss_name (str): the key under which the segmentor logs the loss;
            must start with ``loss_``. Defaults to 'loss_ce'.
    """

    def __init__(
        self,
        class_weight: Sequence[float],
        loss_weight: float = 1.0,
        loss_name: str = 'loss_ce',
    ) -> None:
        super().__init__()
        weights = [float(w) for w in class_weight]
        if not weights:
            raise ValueError('class_weight is empty: give one per class')
        if any(not w >= 0 for w in weights):
            raise ValueError(
                f'class_weight must be non-negative numbers, got {weights}'
            )
        if sum(weights) == 0:
            raise ValueError('class_weight is all zeros: nothing to learn')
        if not loss_name.startswith('loss_'):
            raise ValueError(
                f'loss_name must start with "loss_" so that mmseg counts it '
                f'as a loss, got {loss_name!r}'
            )
        # A plain attribute, not a buffer: the weights are a setting of the
        # loss, not model state to count, save or adapt per gear.
        self.class_weight = torch.tensor(weights)
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(
        self,
        cls_score: Tensor,
        label: Tensor,
        weight: Optional[Tensor] = None,
        ignore_index: int = 255,
        **kwargs,
    ) -> Tensor:
        """Args:
        cls_score (Tensor): (N, C, H, W) logits.
        label (Tensor): (N, H, W) class indices or ``ignore_index``.
        weight (Tensor, optional): per-pixel weights; not supported.
        ignore_index (int): the label of pixels to skip.
        """
        if weight is not None:
            raise NotImplementedError(
                'ClassWeightedCrossEntropyLoss takes no per-pixel weight '
                '(sampler); use class_weight alone'
            )
        num_classes = cls_score.shape[1]
        if num_classes != len(self.class_weight):
            raise ValueError(
                f'class_weight has {len(self.class_weight)} entries but the '
                f'head predicts {num_classes} classes'
            )
        class_weight = self.class_weight.to(cls_score)
        loss = F.cross_entropy(
            cls_score,
            label,
            weight=class_weight,
            ignore_index=ignore_index,
            reduction='sum',
        )
        valid = label != ignore_index
        total = class_weight[label[valid]].sum()
        # clamp: with no labelled pixel the loss is 0, not 0 / 0.
        return self.loss_weight * loss / total.clamp(min=1e-12)

    @property
    def loss_name(self) -> str:
        return self._loss_name
