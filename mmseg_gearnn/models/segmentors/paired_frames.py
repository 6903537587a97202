"""What distilled gears and stability training share: the second frame of
a training pair, a copy that a pipeline step packed into each sample's
metainfo (the clean frame of :class:`DistilledGearNNSegmentor`, the
distorted one of :class:`StabilitySegmentor`), prepared as the inputs
are; and the per-pixel KL that compares the predictions on the two."""

import numpy as np
import torch
import torch.nn.functional as F
from mmseg.structures import SegDataSample
from mmseg.utils import SampleList
from torch import Tensor, nn


def pixel_kl(target_logits: Tensor, logits: Tensor, valid: Tensor) -> Tensor:
    """Per-pixel ``KL(softmax(target_logits) || softmax(logits))`` over the
    class dimension, averaged over the ``valid`` pixels.

    Args:
        target_logits (Tensor): (N, C, H, W), the reference distribution.
        logits (Tensor): (N, C, H, W), the distribution pulled toward it.
        valid (Tensor): (N, H, W) bool; with no valid pixel the result is a
            zero that still depends on ``logits`` (zero gradient, no NaN).

    Returns:
        Tensor: a scalar.
    """
    log_p = F.log_softmax(target_logits.float(), dim=1)
    log_q = F.log_softmax(logits.float(), dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    kl = torch.where(valid, kl, torch.zeros_like(kl))
    return kl.sum() / valid.sum().clamp(min=1)


def to_chw_tensor(img) -> Tensor:
    """An HxW(xC) array as a CxHxW tensor, as ``PackSegInputs`` packs
    ``img``; a tensor is taken as already packed."""
    if isinstance(img, Tensor):
        return img
    img = np.asarray(img)
    if img.ndim < 3:
        img = img[..., None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def paired_batch(
    data_preprocessor: nn.Module,
    data_samples: SampleList,
    key: str,
    inputs: Tensor,
    copy: str,
    step: str,
) -> Tensor:
    """The batch of each sample's ``metainfo[key]`` copy, prepared as
    ``inputs`` (the same data preprocessor, training mode: the same channel
    order, normalisation and padding).

    Args:
        data_preprocessor (nn.Module): the model's data preprocessor.
        data_samples (list[SegDataSample]): the batch's samples.
        key (str): the metainfo key of the copy.
        inputs (Tensor): the prepared batch the copies pair with.
        copy (str): what the copy is, for the errors (``'clean copy'``).
        step (str): the pipeline step that makes it, for the errors (e.g.
            ``'KeepCleanCopy right before RandomDistortion'``).

    Raises:
        KeyError: a sample carries no copy (naming ``step`` and ``key``).
        ValueError: the copies' batch differs in shape from ``inputs``.
    """
    copies = []
    for i, sample in enumerate(data_samples):
        img = sample.metainfo.get(key)
        if img is None:
            raise KeyError(
                f'data sample {i} carries no {copy}: put {step} in the '
                f"training pipeline and add '{key}' to PackSegInputs' "
                'meta_keys'
            )
        copies.append(to_chw_tensor(img))
    batch = data_preprocessor(
        dict(inputs=copies, data_samples=[SegDataSample() for _ in copies]),
        True,
    )['inputs']
    if batch.shape != inputs.shape:
        raise ValueError(
            f'the batch of each {copy} has shape {tuple(batch.shape)}, the '
            f'inputs {tuple(inputs.shape)}: {step.split()[0]} must come '
            'after every transform that changes the size'
        )
    return batch
