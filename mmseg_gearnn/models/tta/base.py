"""What the test-time adaptation wrappers share: the BatchNorm layers they
adapt, the source state they return to, episodic resets, and adaptation
on top of GearNN's gears (one adapted state per route)."""

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional

import torch
from mmseg.utils import ConfigType, OptConfigType, OptSampleList, SampleList
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..adaptor import NOT_SELECTED
from ..gear_bank import Route
from ..segmentors.gearnn import GearNNSegmentor
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
      └─ _adapt_and_predict(segmentor, x)       the subclass's method

    ``loss``, ``tensor`` mode, ``encode_decode`` and ``extract_feat`` are
    the wrapped segmentor's, unadapted. The source values are taken lazily,
    so that a checkpoint loaded after building (``load_from``, mmseg's test
    tool) is the source; loading another one makes it the new source.

    **Over GearNN** (the wrapped segmentor is a
    :class:`~mmseg_gearnn.models.segmentors.GearNNSegmentor`): each frame
    runs on its routed gear and the adaptation works on top of it, with
    one adapted state per route (gear, or blend of gears):

    .. code:: text

     predict(x)
      └─ per group of frames sharing a route (GearNN's router):
          ├─ switch the route's tensors into the base (under the gear
          │     bank's lock)
          ├─ load the route's adapted state (none yet, or episodic: the
          │     gear as trained)
          ├─ _adapt_and_predict(base, group)
          └─ keep the adapted state as the route's, and put the gear's
                own tensors back

    Why one state per route: a gear is the model of one condition, and
    the router picks it because the frames look like that condition; what
    the adaptation learned on gear ``a``'s frames is an adjustment of gear
    ``a`` to its condition, not of gear ``b`` (whose tensors differ).
    Each gear therefore adapts only on the frames routed to it, as if each
    gear had its own wrapper, and a stream that alternates between
    conditions (or a router that hesitates between two gears) resumes each
    gear's adaptation instead of losing it (a reset at every change of
    gear would) or carrying one gear's adjustment into another (a single
    shared state would). The base and the gear bank never keep an adapted
    value: checkpoints, gear switching and the unadapted paths see the
    gears as trained.

    Args:
        segmentor (dict): config of the wrapped mmseg segmentor (a
            ``GearNNSegmentor`` or a subclass included).
        episodic (bool): return to the source before every batch (each
            batch adapts the source model alone; over GearNN, the routed
            gear as trained) instead of carrying the adaptation along the
            stream.
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
        if isinstance(self.segmentor, TestTimeAdaptedSegmentor):
            raise ValueError(
                f'{type(self).__name__} wraps {type(self.segmentor).__name__}'
                ', another test-time adaptation wrapper: the two would adapt '
                'the same BatchNorm layers; wrap the segmentor (or the '
                'GearNNSegmentor) with one of them'
            )
        self.episodic = bool(episodic)
        self._source: Optional[List[Tensor]] = None
        #: Adapted values of :meth:`adapted_tensors` per route (over GearNN).
        self._route_states: Dict[Route, List[Tensor]] = {}
        # On the segmentor, so that loading it alone counts too.
        self.segmentor.register_load_state_dict_post_hook(self._forget_source)

    @property
    def over_gears(self) -> bool:
        """Whether the wrapped segmentor is a GearNN model (the adaptation
        works on top of each frame's gear, one state per route)."""
        return isinstance(self.segmentor, GearNNSegmentor)

    @property
    def adapted_model(self) -> nn.Module:
        """The mmseg segmentor that computes and adapts: the wrapped one,
        or GearNN's base (which holds the switched-in gear)."""
        if self.over_gears:
            return self.segmentor.segmentor
        return self.segmentor

    def adapted_tensors(self) -> List[Tensor]:
        """The tensors adaptation changes (what :meth:`reset` restores)."""
        raise NotImplementedError

    def _adapt_and_predict(
        self, model: nn.Module, inputs: Tensor, data_samples: OptSampleList
    ) -> SampleList:
        """Adapts ``model`` (:attr:`adapted_model`) to ``inputs`` and
        predicts them with it."""
        raise NotImplementedError

    def _enter_route(self, route: Optional[Route]) -> None:
        """Hook before each adaptation over GearNN (``route``) or of a
        plain segmentor (None): state a subclass keeps beside the adapted
        tensors (an optimizer) follows the route here."""

    def _forget_source(self, *args) -> None:
        """The next batch starts from the segmentor's current state (over
        GearNN: every route from its gear as loaded)."""
        self._source = None
        self._route_states = {}

    @torch.no_grad()
    def reset(self) -> None:
        """Returns the adapted tensors to their source values (a no-op
        before the first batch); over GearNN, every route starts again
        from its gear as trained."""
        self._route_states = {}
        if self._source is None:
            return
        for tensor, value in zip(self.adapted_tensors(), self._source):
            tensor.copy_(value)

    def predict(
        self, inputs: Tensor, data_samples: OptSampleList = None
    ) -> SampleList:
        """Adapts to the batch ``inputs`` (no labels read), then predicts
        it with the adapted segmentor (over GearNN: each frame on its
        routed gear, adapted on top)."""
        if self.over_gears:
            return self._predict_on_gears(inputs, data_samples)
        if self._source is None:
            self._source = [t.detach().clone() for t in self.adapted_tensors()]
        elif self.episodic:
            self.reset()
        self._enter_route(None)
        return self._adapt_and_predict(self.segmentor, inputs, data_samples)

    def _predict_on_gears(
        self, inputs: Tensor, data_samples: OptSampleList
    ) -> SampleList:
        gearnn = self.segmentor
        if gearnn.training:
            raise RuntimeError(
                f'{type(self).__name__} over a GearNNSegmentor predicts in '
                'eval mode only (gears are switched into the base in place '
                'for inference): call model.eval() first'
            )
        if gearnn.adaptor_pending:
            raise RuntimeError(NOT_SELECTED)
        gearnn.load_pending_gears_file()
        results: List = [None] * inputs.shape[0]
        for route, idx, sub_inputs, sub_samples in gearnn.groups(
            inputs, data_samples
        ):
            with gearnn.gear_bank.lock:
                gearnn.gear_bank.switch(route)
                predicted = self._adapt_route(route, sub_inputs, sub_samples)
            for i, sample in zip(idx, predicted):
                results[i] = sample
        return results

    def _adapt_route(
        self, route: Route, inputs: Tensor, data_samples: OptSampleList
    ) -> SampleList:
        """With ``route`` switched in: its adapted state in, adapt and
        predict, its adapted state kept, the gear's tensors back."""
        tensors = self.adapted_tensors()
        with torch.no_grad():
            gear_values = [t.detach().clone() for t in tensors]
            state = None if self.episodic else self._route_states.get(route)
            if state is not None:
                torch._foreach_copy_(tensors, state)
        try:
            self._enter_route(route)
            predicted = self._adapt_and_predict(
                self.adapted_model, inputs, data_samples
            )
            if not self.episodic:
                self._route_states[route] = [
                    t.detach().clone() for t in tensors
                ]
            return predicted
        finally:
            with torch.no_grad():
                torch._foreach_copy_(tensors, gear_values)

    def _map_bare_checkpoint(
        self, state_dict: Dict, prefix: str, *args
    ) -> None:
        """Over GearNN, a checkpoint of the GearNN model (its base under
        ``segmentor.``, its gears under ``gear_bank.``) or of its bare base
        moves under ``segmentor.``, where GearNN's own loading takes it;
        the wrapper's own checkpoint (``segmentor.segmentor.``...) stays.
        Otherwise as :class:`SegmentorWrapper`."""
        if not self.over_gears:
            super()._map_bare_checkpoint(state_dict, prefix, *args)
            return
        seg_prefix = prefix + 'segmentor.'
        wrapped = set(self.segmentor.state_dict())
        if any(
            key.startswith(seg_prefix) and key[len(seg_prefix) :] in wrapped
            for key in state_dict
        ):
            return
        for key in list(state_dict):
            if key.startswith(prefix):
                state_dict[seg_prefix + key[len(prefix) :]] = state_dict.pop(
                    key
                )

    # -- the wrapped segmentor, unadapted ----------------------------------
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        return self.segmentor.loss(inputs, data_samples)
