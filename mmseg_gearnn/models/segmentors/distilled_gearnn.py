"""GearNN gears trained with dense targets: each gear is pulled towards the
base's own prediction (or a teacher's) on the clean frame, beside the label
loss."""

import copy
import os.path as osp
from contextlib import contextmanager
from typing import Iterator, List, Optional

import torch
from mmengine.config import ConfigDict
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.utils import SampleList
from torch import Tensor

from ...distortions.clean_copy import CLEAN_IMG
from ...utils.checkpoint import load_checkpoint_safely
from .gearnn import GearNNSegmentor
from .paired_frames import paired_batch, pixel_kl


@contextmanager
def captured_logits(head) -> Iterator[List[Tensor]]:
    """Within it, every output of ``head.forward`` is appended to the
    yielded list. mmseg's ``decode_head.loss`` calls ``self.forward``
    directly, not through ``__call__``, so a forward hook would not see
    it: the instance's ``forward`` is wrapped for the duration instead."""
    outputs: List[Tensor] = []
    forward = head.forward

    def recording_forward(*args, **kwargs):
        out = forward(*args, **kwargs)
        outputs.append(out)
        return out

    head.forward = recording_forward
    try:
        yield outputs
    finally:
        del head.forward  # the class's method again


@MODELS.register_module()
class DistilledGearNNSegmentor(GearNNSegmentor):
    """:class:`GearNNSegmentor` whose gears also learn the base's prediction
    on the clean frame: per gear group,

    ``L = L_label(gear(x')) + weight * T^2 * mean_pixels KL(p_T(base(x)) ||
    p_T(gear(x')))``

    where ``x'`` is the distorted frame the gear sees, ``x`` the same frame
    undistorted, ``p_T`` the per-pixel softmax at temperature ``T`` of the
    decode head's logits (at the head's own resolution), and ``base`` the
    frozen base in inference mode (its BN running statistics, no gear), or
    the teacher of ``teacher_checkpoint`` in its place. A teacher serves a
    robust base (fine-tuned on distortions, which costs it clean
    accuracy): the clean-trained model's prediction on the clean frame is
    the better target, for the clean gear above all.
    With a few batches per gear, the dense target gives every pixel a full
    distribution to match, not only its label, and it is defined on
    unlabelled pixels too, so the mean runs over every pixel.

    .. code:: text

     loss(x', samples)            x = metainfo['clean_img'] of each sample
      └─ per gear group (as GearNNSegmentor.loss):
           ├─ label loss with the gear, the decode head's logits kept
           ├─ no_grad, base alone, eval mode: target = head(base(x))
           └─ loss_distill = weight * T^2 * KL(target || logits)

    Where ``x`` comes from: :class:`~mmseg_gearnn.distortions.KeepCleanCopy`
    in the training pipeline, right before ``RandomDistortion``, with
    ``'clean_img'`` in ``PackSegInputs``' ``meta_keys``; the copies are
    prepared by the model's data preprocessor as the inputs are. Inference
    is :class:`GearNNSegmentor`'s, unchanged.

    Args:
        distill_weight (float): weight of the distillation term (>= 0; 0
            trains as :class:`GearNNSegmentor`).
        temperature (float): softmax temperature ``T`` (> 0) of target and
            prediction; the term is scaled by ``T^2`` so that its gradient
            keeps its size across temperatures (Hinton et al., 2015).
        teacher_checkpoint (str, optional): a checkpoint of the same
            segmentor (a plain mmseg model's, or a stability-trained
            wrapper's) whose prediction is the target instead of the
            base's; read at the first training step, never saved in the
            model's checkpoints and not needed for inference.
        **kwargs: the arguments of :class:`GearNNSegmentor`.
    """

    def __init__(
        self,
        distill_weight: float = 1.0,
        temperature: float = 1.0,
        teacher_checkpoint: Optional[str] = None,
        **kwargs,
    ) -> None:
        if not distill_weight >= 0:
            raise ValueError(
                f'distill_weight must be >= 0, got {distill_weight}'
            )
        if not temperature > 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        super().__init__(**kwargs)
        self.distill_weight = float(distill_weight)
        self.temperature = float(temperature)
        self.teacher_checkpoint = teacher_checkpoint
        segmentor = ConfigDict(copy.deepcopy(kwargs['segmentor']))
        segmentor.pop('data_preprocessor', None)
        self._segmentor_cfg = segmentor
        # A list, not an attribute: the teacher is no submodule of the
        # model, so it stays out of its state dict and its checkpoints.
        self._teacher: List[BaseSegmentor] = []

    def call_route(self, route, method: str, *args):
        """:meth:`GearNNSegmentor.call_route`, plus ``loss_distill`` in a
        gear's training loss."""
        if not (self.training and method == 'loss' and self.distill_weight):
            return super().call_route(route, method, *args)
        inputs, data_samples = args
        with captured_logits(self.segmentor.decode_head) as outputs:
            losses = super().call_route(route, method, inputs, data_samples)
        logits = outputs[-1]
        target = self.clean_logits(inputs, data_samples)
        if target.shape != logits.shape:
            raise ValueError(
                f'the clean frames give logits of shape {tuple(target.shape)}'
                f', the distorted ones {tuple(logits.shape)}: KeepCleanCopy '
                'must come after every transform that changes the size'
            )
        t = self.temperature
        valid = torch.ones(
            logits.shape[:1] + logits.shape[2:],
            dtype=torch.bool,
            device=logits.device,
        )
        losses['loss_distill'] = (
            self.distill_weight
            * t
            * t
            * pixel_kl(target / t, logits / t, valid)
        )
        return losses

    def teacher(self) -> BaseSegmentor:
        """The frozen teacher of ``teacher_checkpoint``, in inference mode,
        read once; a checkpoint of another model is an error naming it."""
        if not self._teacher:
            path = self.teacher_checkpoint
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'teacher_checkpoint {path!r} does not exist'
                )
            checkpoint = load_checkpoint_safely(path)
            state = _bare_state(checkpoint.get('state_dict', checkpoint))
            model = MODELS.build(copy.deepcopy(self._segmentor_cfg))
            try:
                missing, unexpected = model.load_state_dict(
                    state, strict=False
                )
            except RuntimeError as err:  # tensors of other shapes
                raise ValueError(
                    f'teacher_checkpoint {path!r} is not a checkpoint of '
                    f'this segmentor: {str(err).splitlines()[-1].strip()}'
                ) from None
            if missing or unexpected:
                raise ValueError(
                    f'teacher_checkpoint {path!r} is not a checkpoint of '
                    f'this segmentor (a plain or stability-trained model): '
                    f'{len(missing)} of its tensors missing (e.g. '
                    f'{missing[:2]}), {len(unexpected)} unexpected (e.g. '
                    f'{unexpected[:2]})'
                )
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            self._teacher.append(model)
        return self._teacher[0]

    @torch.no_grad()
    def clean_logits(self, inputs: Tensor, data_samples: SampleList):
        """The decode head's logits of the base alone (or the teacher), in
        inference mode, on the clean copies of ``data_samples`` (prepared
        as ``inputs``)."""
        clean = paired_batch(
            self.data_preprocessor,
            data_samples,
            CLEAN_IMG,
            inputs,
            copy='clean copy',
            step='KeepCleanCopy right before RandomDistortion',
        )
        if self.teacher_checkpoint is not None:
            teacher = self.teacher().to(clean.device)
            return teacher.decode_head.forward(teacher.extract_feat(clean))
        modes = [(m, m.training) for m in self.segmentor.modules()]
        self.segmentor.eval()
        try:
            with self.gear_bank.lock:
                self.restore_base()
                feats = self.segmentor.extract_feat(clean)
                return self.segmentor.decode_head.forward(feats)
        finally:
            for module, mode in modes:
                module.training = mode


def _bare_state(state: dict) -> dict:
    """A checkpoint's tensors with a stability wrapper's ``segmentor.``
    prefix taken off (a plain mmseg checkpoint has none)."""
    prefix = 'segmentor.'
    if any(k.startswith(prefix) for k in state):
        return {
            (k[len(prefix) :] if k.startswith(prefix) else k): v
            for k, v in state.items()
        }
    return state
