"""GearNN: one shared base segmentor plus a small adaptor per distortion
level (a gear), switched per input."""

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import ConfigType, OptConfigType, OptSampleList, SampleList
from torch import Tensor

from ...distortions import CLEAN_GEAR, build_space
from ..adaptor import NOT_SELECTED
from ..adaptor_tensors import bn_modules
from ..gear_bank import Route
from ..routing import build_router
from .gear_state import GearStateMixin
from .wrapper import SegmentorWrapper


@MODELS.register_module()
class GearNNSegmentor(GearStateMixin, SegmentorWrapper):
    """Wraps any mmseg segmentor with per-gear adaptors.

    The base segmentor exists once; each distorted gear holds only its
    adaptor tensors (:class:`GearBank`). Gear 0 is the clean input and runs
    the base unchanged. A router (:mod:`mmseg_gearnn.models.routing`)
    decides where each sample runs: a gear, or a blend of gears.

    1. The call flow (``loss``, ``predict``, ``_forward`` and
    ``encode_decode`` alike; ``loss`` skips the clean group):

    .. code:: text

     train_step (data, optim_wrapper)
      └─ loss(), then update_gears(): backward, step the gears that got
         gradients
     loss / predict / _forward (inputs, data_samples)
      └─ groups(): router.route() per sample  (metadata, estimate, ...)
          └─ one group of samples per route
              └─ call_route(route, method, group)
                  ├─ training:  gear_bank.call()    the gear's tensors
                  │             swapped in for the call (functional_call)
                  └─ inference: gear_bank.switch()  the gear's (or a
                                blend's) tensors copied into the base,
                                under gear_bank.lock
                     └─ segmentor.<method>(group)
      └─ merge the group results in the original sample order

    2. Training: base parameters have ``requires_grad=False`` and every BN
    layer of the base runs in eval mode; only BN layers whose statistics are
    in the adaptor run in train mode, on the gear's own buffers. Only the
    tensors of the gears present in a batch receive gradients; the others
    have none (None, not zero), so the optimiser skips them and a gear
    absent from a batch, and its optimiser state, never move, whatever the
    optimiser, momentum or weight decay (:meth:`update_gears`). A batch of
    clean samples only updates nothing.

    3. Base binding: a gears file records the sha256 of the base weights
    the gears were trained on; :meth:`load_gears` refuses it on other
    weights unless ``allow_other_base``. Loading a checkpoint by any path
    (``load_state_dict``, ``assign=True``, mmengine's ``load_checkpoint``,
    the Runner's ``load_from`` and ``resume``) while a gear is switched in
    gives the model that loading with no gear switched in gives.

    4. Threads: ``predict``, ``_forward``, ``encode_decode`` and the
    switch methods may be called from several threads that serve different
    gears: each switch and the computation with it run under the gear
    bank's re-entrant lock (``gear_bank.lock``), so concurrent calls are
    serialised and each gets exactly its gear's output. Code that switches
    a gear and then calls ``segmentor`` itself holds that lock around both.

    5. State: the adaptor (by budget: pending until selected), the gears
    file and the checkpoint hooks are :class:`GearStateMixin`'s
    (``gear_state.py``).

    Args:
        segmentor (dict): config of the base mmseg segmentor.
        space (dict): the distortion space (the gear table).
        adaptor (str | list[str] | dict): which tensors each gear holds:
            the path of a selection JSON written by
            ``tools/select_params.py``, a list of state-dict names, ``'bn'``
            (BN affine and statistics: the per-level BN baseline), ``'all'``
            (every tensor: full per-level fine-tuning) or a budget, e.g.
            ``dict(budget=0.002, method='fisher')``, selected on the loaded
            base before the gears train (``AdaptorSelectionHook``) or taken
            from a checkpoint of this model (see :mod:`..adaptor`). A
            checkpoint whose gears hold another adaptor brings its own,
            with a warning naming both.
        default_gear (int): gear of a sample the router leaves undecided
            (no distortion metadata).
        gears_file (str, optional): a gears file (:meth:`save_gears`),
            loaded once a base checkpoint has filled the base, else at the
            first forward call (a checkpoint with gears keeps its own).
        allow_other_base (bool): load gears files trained on other weights
            of the base (same architecture) with a warning instead of
            refusing them (``--cfg-options model.allow_other_base=True``).
        allow_random_base (bool): let gears train on a base no checkpoint
            filled, which a run refuses otherwise; for tests only.
        router (dict, optional): the router config, e.g.
            ``dict(type='CheckedGearRouter', estimator='est.pth')``; None
            for ``MetadataGearRouter``.
        routing (str, optional): a policy name (``'metadata'``,
            ``'estimate'``, ``'checked'``, ``'default'``): its router.
        estimator, level_routing, compound_routing, compound_severity:
            router arguments (see
            :class:`~mmseg_gearnn.models.routing.GearRouter`); like
            ``routing``, they override the router config where given.
        data_preprocessor (dict, optional): defaults to the segmentor's.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(
        self,
        segmentor: ConfigType,
        space: ConfigType,
        adaptor: Union[str, Sequence[str], dict] = 'bn',
        default_gear: int = CLEAN_GEAR,
        gears_file: Optional[str] = None,
        router: OptConfigType = None,
        routing: Optional[str] = None,
        estimator: Optional[str] = None,
        level_routing: Optional[str] = None,
        compound_routing: Optional[str] = None,
        compound_severity: Optional[Union[str, dict]] = None,
        allow_other_base: bool = False,
        allow_random_base: bool = False,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptConfigType = None,
    ) -> None:
        super().__init__(
            segmentor, data_preprocessor=data_preprocessor, init_cfg=init_cfg
        )
        self.space = build_space(space)
        self._init_gear_state(
            adaptor, gears_file, allow_other_base, allow_random_base
        )
        # A plain object: its estimator's weights are not the model's and
        # stay out of its checkpoints.
        self.router = build_router(
            router,
            self.space,
            default_gear,
            routing=routing,
            estimator=estimator,
            level_routing=level_routing,
            compound_routing=compound_routing,
            compound_severity=compound_severity,
        )
        for p in self.segmentor.parameters():
            p.requires_grad_(False)

    # -- routing and switching: the router and the gear bank ---------------
    @property
    def default_gear(self) -> int:
        return self.router.default_gear

    def route(self, inputs: Tensor, data_samples: OptSampleList) -> List:
        """Where every sample runs (see the router's ``route``)."""
        return self.router.route(inputs, data_samples, self.data_preprocessor)

    def metadata_route(self, data_sample) -> Optional[Route]:
        """Where a sample's distortion metadata sends it (None without)."""
        return self.router.metadata_route(data_sample)

    def metadata_gear(self, data_sample) -> Optional[int]:
        """The (heaviest) gear of a sample's metadata route (None without)."""
        return self.router.metadata_gear(data_sample)

    def gear_of(self, data_sample) -> int:
        """The gear of one sample from its metadata, else the default."""
        return self.router.gear_of(data_sample)

    def estimate_gears(self, inputs: Tensor, data_samples: OptSampleList):
        """The estimator's gear for each (preprocessed) input image."""
        return self.router.estimate_gears(
            inputs, data_samples, self.data_preprocessor
        )

    def switch_gear(self, gear: int) -> None:
        """Makes the model compute with ``gear`` (in place, for inference)."""
        self.gear_bank.switch_gear(gear)

    def switch_blend(self, pairs: Sequence[Tuple[int, float]]) -> None:
        """Makes the model compute with a blend of gears (in place)."""
        self.gear_bank.switch_blend(pairs)

    def restore_base(self) -> None:
        """Puts the base's tensors back after in-place gear switching."""
        self.gear_bank.restore()

    def groups(self, inputs: Tensor, data_samples: OptSampleList):
        """``(route, indices, inputs, samples)`` of each group of samples
        that share a route, in the order routes first appear."""
        groups: Dict[Route, List[int]] = {}
        for i, route in enumerate(self.route(inputs, data_samples)):
            groups.setdefault(route, []).append(i)
        for route, idx in groups.items():
            sub_samples = (
                None
                if data_samples is None
                else [data_samples[i] for i in idx]
            )
            # A contiguous run of samples is a view; only a scattered group
            # is gathered into a copy.
            if idx == list(range(idx[0], idx[-1] + 1)):
                sub_inputs = inputs[idx[0] : idx[-1] + 1]
            else:
                sub_inputs = inputs[idx]
            yield route, idx, sub_inputs, sub_samples

    def call_route(self, route: Route, method: str, *args):
        """Runs ``segmentor.<method>(*args)`` with the route's tensors.

        Training swaps the gear's tensors in for the call only, so
        gradients reach the gear and the base is never written. Inference
        copies the gear's tensors (or a blend's) into the model when the
        route changes (the paper's switch: a copy of the adaptor), which
        costs nothing while consecutive inputs share a route.
        """
        if self.adaptor_pending:
            raise RuntimeError(NOT_SELECTED)
        self.load_pending_gears_file()
        if not self.training:
            # The switch and the computation with it, as one: another
            # thread's switch cannot come in between.
            with self.gear_bank.lock:
                self.gear_bank.switch(route)
                return getattr(self.segmentor, method)(*args)
        if isinstance(route, tuple):
            raise ValueError(
                f'a training sample routes to the blend of gears {route} '
                f"(level_routing='interpolate' for a level off the gear "
                f"table, or compound_routing='blend'): blends are for "
                'inference only; train each gear on the levels of the '
                'gear table'
            )
        with self.gear_bank.lock:
            self.restore_base()
            return self.gear_bank.call(route, method, *args)

    # -- BaseSegmentor API -------------------------------------------------
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Loss of each gear group, weighted by its share of the batch."""
        batch_size = inputs.shape[0]
        merged: Dict[str, Tensor] = {}
        trained = False
        for gear, idx, sub_inputs, sub_samples in self.groups(
            inputs, data_samples
        ):
            if gear == CLEAN_GEAR:
                continue  # the clean gear is the base: nothing to learn
            with self.gear_bank.adapted_bn_frozen(len(idx) < 2):
                losses = self.call_route(gear, 'loss', sub_inputs, sub_samples)
            weight = len(idx) / batch_size
            for key, value in losses.items():
                value = value * weight
                merged[key] = merged[key] + value if key in merged else value
            trained = True
        if not trained:
            # A batch of clean samples only: a zero loss the runner can
            # log and backward, connected to no gear, so no gear gets a
            # gradient (a zero gradient would still move a gear through
            # momentum and weight decay).
            merged['loss_no_distorted_samples'] = inputs.new_zeros(
                (), dtype=torch.float32, requires_grad=True
            )
        return merged

    def train_step(self, data, optim_wrapper) -> Dict[str, Tensor]:
        """``BaseModel.train_step`` with :meth:`update_gears` as the
        update."""
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode='loss')
        parsed_loss, log_vars = self.parse_losses(losses)
        self.update_gears(optim_wrapper, parsed_loss)
        return log_vars

    @staticmethod
    def update_gears(
        optim_wrapper, loss: Tensor, reduce_grads: Optional[Callable] = None
    ) -> None:
        """``OptimWrapper.update_params`` that leaves absent gears alone.

        Backward; then, when the wrapper would step (gradient accumulation
        counted as it counts it), ``reduce_grads()`` (a data-parallel
        wrapper's gradient all-reduce), a step only if some tensor has a
        gradient, and gradients reset to None. A gear absent from the batch
        has no gradient, so every ``torch.optim`` optimiser skips it; with
        no gradient at all the step is skipped, which changes nothing for
        those optimisers and keeps a mixed-precision wrapper's GradScaler
        from failing on a step without gradients.

        Args:
            optim_wrapper (OptimWrapper): the optimiser wrapper.
            loss (Tensor): the parsed loss.
            reduce_grads (callable, optional): called before the step.
        """
        optim_wrapper.backward(optim_wrapper.scale_loss(loss))
        if not optim_wrapper.should_update():
            return
        if reduce_grads is not None:
            reduce_grads()
        if any(
            p.grad is not None
            for group in optim_wrapper.param_groups
            for p in group['params']
        ):
            optim_wrapper.step()
        optim_wrapper.zero_grad(set_to_none=True)

    def predict(
        self, inputs: Tensor, data_samples: OptSampleList = None
    ) -> SampleList:
        if data_samples is None:
            data_samples = self._default_samples(inputs)
        results: List = [None] * inputs.shape[0]
        for route, idx, sub_inputs, sub_samples in self.groups(
            inputs, data_samples
        ):
            predicted = self.call_route(
                route, 'predict', sub_inputs, sub_samples
            )
            for i, sample in zip(idx, predicted):
                results[i] = sample
        return results

    def _forward(
        self, inputs: Tensor, data_samples: OptSampleList = None
    ) -> Tensor:
        return self._merge_tensors(inputs, data_samples, '_forward')

    def encode_decode(
        self, inputs: Tensor, batch_img_metas: List[dict]
    ) -> Tensor:
        samples = [SegDataSample(metainfo=m) for m in batch_img_metas]
        return self._merge_tensors(inputs, samples, 'encode_decode', True)

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        """Features of the default gear (no metadata to route by)."""
        return self.call_route(self.default_gear, 'extract_feat', inputs)

    def _merge_tensors(self, inputs, data_samples, method, metas=False):
        """Each group's ``method`` output, stacked in sample order; with
        ``metas`` the group gets its samples' metainfo, not the samples."""
        out: List[Optional[Tensor]] = [None] * inputs.shape[0]
        for route, idx, sub_inputs, sub_samples in self.groups(
            inputs, data_samples
        ):
            if metas:
                sub_samples = [s.metainfo for s in sub_samples]
            result = self.call_route(route, method, sub_inputs, sub_samples)
            for j, i in enumerate(idx):
                out[i] = result[j]
        return torch.stack(out)

    def _default_samples(self, inputs: Tensor) -> SampleList:
        shape = tuple(inputs.shape[-2:])
        meta = dict(ori_shape=shape, img_shape=shape, pad_shape=shape)
        return [
            SegDataSample(metainfo=dict(meta, padding_size=[0, 0, 0, 0]))
            for _ in range(inputs.shape[0])
        ]

    # -- weights and modes -------------------------------------------------
    def init_weights(self) -> None:
        """Initialises the base and starts every gear from it; a
        ``gears_file`` is loaded once the base is filled, not here: a
        Runner initialises before it loads ``load_from``."""
        self.restore_base()
        super().init_weights()
        self.gear_bank.reset_from()
        self.gears_file_pending = self.gears_file is not None

    def _apply(self, fn, *args, **kwargs):
        if 'gear_bank' in self._modules:  # not while __init__ builds
            self.gear_bank.invalidate()
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        """Sets the mode; in training the base stays frozen: only adapted
        BN layers run in train mode."""
        super().train(mode)
        if mode:
            self.restore_base()
            for name, module in bn_modules(self.segmentor).items():
                module.train(name in self.gear_bank.adapted_bn)
        return self

    def check_base_frozen(self) -> None:
        """Raises if any base parameter would receive gradients."""
        trainable = [
            n for n, p in self.segmentor.named_parameters() if p.requires_grad
        ]
        if trainable:
            raise RuntimeError(
                f'{len(trainable)} base tensor(s) require gradients '
                f'({trainable[:5]}): the base of a GearNNSegmentor must stay '
                'frozen'
            )
