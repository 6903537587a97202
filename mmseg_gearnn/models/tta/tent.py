"""TENT (Wang, Shelhamer, Liu, Olshausen and Darrell, ICLR 2021): test
entropy minimisation over the BatchNorm affine parameters, online."""

import copy
from typing import Dict, List, Optional

import torch
from mmengine.registry import OPTIMIZERS
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptSampleList, SampleList
from torch import Tensor, nn

from ..gear_bank import Route
from .base import TestTimeAdaptedSegmentor, batch_statistics, batchnorm_layers


def mean_pixel_entropy(logits: Tensor) -> Tensor:
    """Mean over the batch's pixels of the entropy of the softmax over the
    class dimension of ``logits`` (N, C, H, W): TENT's loss."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


def image_metas(inputs: Tensor, data_samples: OptSampleList) -> List[dict]:
    """The image metas mmseg's ``EncoderDecoder.predict`` reads: the
    samples' metainfo, else the input size for every image."""
    if data_samples is not None:
        return [sample.metainfo for sample in data_samples]
    size = inputs.shape[2:]
    return [
        dict(
            ori_shape=size,
            img_shape=size,
            pad_shape=size,
            padding_size=[0, 0, 0, 0],
        )
    ] * inputs.shape[0]


@MODELS.register_module()
class TentSegmentor(TestTimeAdaptedSegmentor):
    """Wraps any mmseg segmentor with TENT: before predicting a batch, a
    few gradient steps on the BatchNorm scales and shifts lower the
    entropy of its own predictions on that batch (no labels, no metadata).

    .. code:: text

     predict(x)                      BN layers on the batch's statistics
      ├─ steps times:
      │     H = mean pixel entropy of softmax(encode_decode(x))
      │     optimizer step on the BN weights and biases (dH/dthem only)
      └─ segmentor.predict(x)        with the adapted weights and biases

    As in TENT, every BN layer normalises with the statistics of the
    current batch, during the steps and the prediction, and its running
    statistics are left untouched; every other parameter stays frozen and
    bit-identical. Dropout and every other layer stay in eval mode (the
    reference code puts the whole model in train mode; here the
    prediction is deterministic). The optimizer's state carries along the
    stream with the parameters; ``episodic=True`` returns both to the
    source before every batch. Unlike the reference code, which returns
    the output of the last adaptation pass, the batch is predicted again
    after the last step: one more forward pass, with the adapted model.
    The entropy is taken on the whole-image logits of ``encode_decode``.

    Defaults follow the authors' code (github.com/DequanWang/tent,
    ``cfgs/tent.yaml``): Adam, lr 1e-3, betas (0.9, 0.999), no weight
    decay, one step per batch, online (not episodic).

    Over a ``GearNNSegmentor``, each frame runs on its routed gear and
    TENT adapts the BN weights and biases on top of it, one set (and one
    optimizer) per route (see :class:`TestTimeAdaptedSegmentor`).

    Args:
        segmentor (dict): config of the wrapped mmseg segmentor (a
            ``GearNNSegmentor`` included); it needs a BatchNorm layer with
            a weight and bias.
        optimizer (dict): config of a torch optimizer (mmengine's
            ``OPTIMIZERS`` registry) without ``params``.
        steps (int): optimizer steps per batch (>= 1).
        episodic (bool): restore the source weights, biases and a fresh
            optimizer before every batch.
        data_preprocessor (dict, optional): defaults to the segmentor's.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(
        self,
        segmentor: ConfigType,
        optimizer: ConfigType = dict(
            type='Adam', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0
        ),
        steps: int = 1,
        episodic: bool = False,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptConfigType = None,
    ) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f'steps must be an integer >= 1, got {steps!r}')
        if 'params' in optimizer:
            raise ValueError(
                'the optimizer config must not give params: TENT optimises '
                'the BatchNorm weights and biases'
            )
        super().__init__(
            segmentor,
            episodic=episodic,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        self.steps = steps
        self.optimizer_cfg = copy.deepcopy(dict(optimizer))
        self.bn_layers = batchnorm_layers(
            self.adapted_model,
            type(self).__name__,
            'the weights and biases of BatchNorm layers',
            lambda m: m.affine,
        )
        self._optimizer = self._build_optimizer()
        # Over GearNN: each route's optimizer (its moments follow the
        # route's own adapted weights and biases).
        self._route_optimizers: Dict[Route, torch.optim.Optimizer] = {}

    def _build_optimizer(self) -> torch.optim.Optimizer:
        return OPTIMIZERS.build(
            dict(self.optimizer_cfg, params=self.adapted_tensors())
        )

    def adapted_tensors(self) -> List[Tensor]:
        return [p for m in self.bn_layers for p in (m.weight, m.bias)]

    def reset(self) -> None:
        """Returns the BN weights and biases to their source values and
        starts a fresh optimizer (over GearNN: for every route)."""
        super().reset()
        self._optimizer = self._build_optimizer()
        self._route_optimizers = {}

    def _forget_source(self, *args) -> None:
        super()._forget_source()
        self._optimizer = self._build_optimizer()
        self._route_optimizers = {}

    def _enter_route(self, route: Optional[Route]) -> None:
        """Over GearNN, the route's optimizer (a fresh one when episodic)."""
        if route is None:
            return
        if self.episodic:
            self._optimizer = self._build_optimizer()
            return
        if route not in self._route_optimizers:
            self._route_optimizers[route] = self._build_optimizer()
        self._optimizer = self._route_optimizers[route]

    def _adapt_and_predict(
        self, model: nn.Module, inputs: Tensor, data_samples: OptSampleList
    ) -> SampleList:
        with batch_statistics(self.bn_layers):
            self._adapt(model, inputs, image_metas(inputs, data_samples))
            with torch.no_grad():
                return model.predict(inputs, data_samples)

    def _adapt(
        self, model: nn.Module, inputs: Tensor, batch_img_metas: List[dict]
    ) -> None:
        """``steps`` optimizer steps on the batch's mean pixel entropy, in
        the BN mode the caller set."""
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                'TentSegmentor needs gradients: call predict outside '
                'torch.inference_mode() (torch.no_grad() is fine)'
            )
        params = self.adapted_tensors()
        requires_grad = [p.requires_grad for p in params]
        try:
            with torch.enable_grad():
                for p in params:
                    p.requires_grad_(True)
                for _ in range(self.steps):
                    entropy = mean_pixel_entropy(
                        model.encode_decode(inputs, batch_img_metas)
                    )
                    # Gradients of the BN parameters only: nothing else
                    # accumulates a .grad or is computed for. Layers off
                    # the prediction's path (an auxiliary head) get none,
                    # and the optimizer leaves them as they are.
                    grads = torch.autograd.grad(
                        entropy, params, allow_unused=True
                    )
                    for p, grad in zip(params, grads):
                        p.grad = grad
                    self._optimizer.step()
                    self._optimizer.zero_grad(set_to_none=True)
        finally:
            for p, flag in zip(params, requires_grad):
                p.requires_grad_(flag)
