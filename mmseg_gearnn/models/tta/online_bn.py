"""BatchNorm statistics re-estimated online from the test stream."""

from contextlib import contextmanager
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptSampleList, SampleList
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .base import (
    TestTimeAdaptedSegmentor,
    batch_statistics,
    batchnorm_layers,
    values_per_channel,
)


@contextmanager
def moving_statistics(
    layers: List[_BatchNorm], momentum: float
) -> Iterator[None]:
    """Within it, each of ``layers``, before it runs, moves its running
    statistics toward those of the batch it sees and then normalises with
    them (eval-mode BN):

    ``mean <- (1 - momentum) * mean + momentum * batch_mean``, and likewise
    the variance with the unbiased batch variance, as PyTorch's BN updates
    them in training. A layer that sees a single value per channel has no
    batch variance and keeps its statistics.
    """

    @torch.no_grad()
    def update(module: _BatchNorm, args) -> None:
        x = args[0]
        if values_per_channel(x) < 2:
            return
        # A training-mode BN call updates the running statistics in place
        # exactly so; its output is not needed. Several times faster than
        # torch.var_mean on these activations.
        F.batch_norm(
            x,
            module.running_mean,
            module.running_var,
            training=True,
            momentum=momentum,
            eps=module.eps,
        )
        module.num_batches_tracked.add_(1)

    saved = [(m, m.training) for m in layers]
    handles = [m.register_forward_pre_hook(update) for m in layers]
    for m in layers:
        m.eval()
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for m, training in saved:
            m.train(training)


@MODELS.register_module()
class OnlineBNSegmentor(TestTimeAdaptedSegmentor):
    """Wraps any mmseg segmentor so that its BatchNorm layers take their
    statistics from the test stream, without labels or metadata.

    .. code:: text

     predict(x)
      ├─ momentum=None: every BN layer normalises with the statistics of
      │     the batch x (running statistics untouched)
      └─ momentum=m: every BN layer, as x reaches it, moves its running
            statistics by m toward the batch's, then normalises with them

    ``momentum=None`` is test-batch normalisation (Schneider et al.,
    NeurIPS 2020; Nado et al., 2020): each batch is normalised on its own,
    so it needs batches of several frames of one condition. A float keeps
    an exponential moving estimate along the stream (the stream's
    conditions change, the statistics follow with a lag of about
    ``1 / momentum`` batches); with ``episodic=True`` it mixes the source
    statistics with the batch's by ``momentum`` (a prior of the source).
    Note that ``None`` here is not PyTorch's cumulative average. A BN layer
    that sees a single value per channel (the image-pooling branch of an
    ASPP head at batch 1) keeps its running statistics in both modes.

    Over a ``GearNNSegmentor``, each frame runs on its routed gear and the
    statistics adapt on top of it, one set per route (see
    :class:`TestTimeAdaptedSegmentor`): with a momentum, each gear's
    running statistics follow the frames routed to it.

    Args:
        segmentor (dict): config of the wrapped mmseg segmentor (a
            ``GearNNSegmentor`` included); it needs a BatchNorm layer with
            running statistics.
        momentum (float, optional): ``None`` for the current batch's
            statistics only, else the weight in (0, 1] of each batch in the
            running statistics.
        episodic (bool): restore the source statistics before every batch
            (no effect with ``momentum=None``, which keeps no state).
        data_preprocessor (dict, optional): defaults to the segmentor's.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(
        self,
        segmentor: ConfigType,
        momentum: Optional[float] = None,
        episodic: bool = False,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptConfigType = None,
    ) -> None:
        if momentum is not None and not 0 < momentum <= 1:
            raise ValueError(
                f'momentum must be None or in (0, 1], got {momentum}'
            )
        super().__init__(
            segmentor,
            episodic=episodic,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        self.momentum = None if momentum is None else float(momentum)
        self.bn_layers = batchnorm_layers(
            self.adapted_model,
            type(self).__name__,
            'BatchNorm running statistics',
            lambda m: m.track_running_stats,
        )

    def adapted_tensors(self) -> List[Tensor]:
        return [
            getattr(m, stat)
            for m in self.bn_layers
            for stat in ('running_mean', 'running_var', 'num_batches_tracked')
        ]

    def _adapt_and_predict(
        self, model: nn.Module, inputs: Tensor, data_samples: OptSampleList
    ) -> SampleList:
        if self.momentum is None:
            statistics = batch_statistics(self.bn_layers)
        else:
            statistics = moving_statistics(self.bn_layers, self.momentum)
        with statistics:
            return model.predict(inputs, data_samples)
