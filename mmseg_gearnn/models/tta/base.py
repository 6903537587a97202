"""What the test-time adaptation wrappers share: the BatchNorm layers they
adapt, the source state they return to, and episodic resets."""

from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional

import torch
from mmseg.utils import ConfigType, OptConfigType, OptSampleList, SampleList
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..segmentors.wrapper import SegmentorWrapper


def batchnorm_layers(
    model: nn.Module,
    owner: str,
    needs: str,
    keep: Callable[[_BatchNorm], bool],
) -> List[_BatchNorm]:
    """The BatchNorm layers of ``model`` that ``keep`` accepts.

    Args:
        model (nn.Module): the segmentor to adapt.
        owner (str): the adapting class, named in the error.
        needs (str): what it adapts, named in the error.
        keep (callable): which BatchNorm layers it can adapt.

    Raises:
        ValueError: when no layer qualifies; the message names the
            normalisation layers the model has instead.
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    kept = [m for m in layers if keep(m)]
    if not kept:
        norms = sorted(
            {
                type(m).__name__
                for m in model.modules()
                if 'norm' in type(m).__name__.lower()
            }
        )
        raise ValueError(
            f'{owner} adapts {needs}, but the wrapped segmentor has no such '
            f'layer ({len(layers)} BatchNorm layers; normalisation layers '
            f'found: {", ".join(norms) or "none"})'
        )
    return kept


def values_per_channel(x: Tensor) -> int:
    """How many values each channel of ``x`` holds (N x spatial)."""
    return x.numel() // x.shape[1]


@contextmanager
def batch_statistics(layers: List[_BatchNorm]) -> Iterator[None]:
    """Within it, ``layers`` normalise with the statistics of the batch they
    see, and leave their running statistics untouched.

    A layer that sees a single value per channel (the image-pooling branch
    of an ASPP head at batch 1) has no batch variance: it keeps normalising
    with its running statistics.
    """

    def choose(module: _BatchNorm, args) -> None:
        module.training = values_per_channel(args[0]) > 1

    saved = [(m, m.training, m.track_running_stats) for m in layers]
    handles = [m.register_forward_pre_hook(choose) for m in layers]
    for m in layers:
        # With tracking off, train-mode BN reads and writes no running
        # statistics; in eval mode it still uses them.
        m.track_running_stats = False
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for m, training, track in saved:
            m.training = training
            m.track_running_stats = track


class TestTimeAdaptedSegmentor(SegmentorWrapper):
    """Base of the wrappers that adapt a segmentor to the test stream
    without labels or metadata, batch by batch, at ``predict``.

    .. code:: text

     predict(x)
      ├─ first call (or first after a checkpoint load): keep the source
      │     values of the adapted tensors
      ├─ episodic: reset() to them
      └─ _adapt_and_predict(x)          the subclass's method

    ``loss``, ``tensor`` mode, ``encode_decode`` and ``extract_feat`` are
    the wrapped segmentor's, unadapted. The source values are taken lazily,
    so that a checkpoint loaded after building (``load_from``, mmseg's test
    tool) is the source; loading another one makes it the new source.

    Args:
        segmentor (dict): config of the wrapped mmseg segmentor.
        episodic (bool): return to the source before every batch (each
            batch adapts the source model alone) instead of carrying the
            adaptation along the stream.
        data_preprocessor (dict, optional): defaults to the segmentor's.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(
        self,
        segmentor: ConfigType,
        episodic: bool = False,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptConfigType = None,
    ) -> None:
        super().__init__(
            segmentor, data_preprocessor=data_preprocessor, init_cfg=init_cfg
        )
        self.episodic = bool(episodic)
        self._source: Optional[List[Tensor]] = None
        # On the segmentor, so that loading it alone counts too.
        self.segmentor.register_load_state_dict_post_hook(self._forget_source)

    def adapted_tensors(self) -> List[Tensor]:
        """The tensors adaptation changes (what :meth:`reset` restores)."""
        raise NotImplementedError

    def _adapt_and_predict(
        self, inputs: Tensor, data_samples: OptSampleList
    ) -> SampleList:
        raise NotImplementedError

    def _forget_source(self, *args) -> None:
        """The next batch starts from the segmentor's current state."""
        self._source = None

    @torch.no_grad()
    def reset(self) -> None:
        """Returns the adapted tensors to their source values (a no-op
        before the first batch)."""
        if self._source is None:
            return
        for tensor, value in zip(self.adapted_tensors(), self._source):
            tensor.copy_(value)

    def predict(
        self, inputs: Tensor, data_samples: OptSampleList = None
    ) -> SampleList:
        """Adapts to the batch ``inputs`` (no labels read), then predicts
        it with the adapted segmentor."""
        if self._source is None:
            self._source = [t.detach().clone() for t in self.adapted_tensors()]
        elif self.episodic:
            self.reset()
        return self._adapt_and_predict(inputs, data_samples)

    # -- the wrapped segmentor, unadapted ----------------------------------
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        return self.segmentor.loss(inputs, data_samples)
