"""GearNN: one shared base segmentor plus a small adaptor per distortion
level (a gear), switched per input."""

import json
import math
import os
from collections import defaultdict
from contextlib import contextmanager
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import all_reduce, get_world_size
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptSampleList, SampleList
from torch import Tensor
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from ...distortions import CLEAN, CLEAN_GEAR, DistortionSpace, build_space
from ..gear_bank import (
    GearBank,
    adapted_bn_layers,
    adaptor_candidates,
    bn_names,
    expand_bn_stats,
)
from .wrapper import SegmentorWrapper

ROUTING_POLICIES = ('metadata', 'estimate', 'checked', 'default')
LEVEL_ROUTING = ('nearest', 'interpolate')
COMPOUND_ROUTING = ('dominant', 'first', 'blend')
_BN_STATS = ('running_mean', 'running_var')
_BN_COUNTER = ('num_batches_tracked',)

# Where a sample runs: one gear id, or a blend of gears as
# ((gear, weight), ...) in gear order, weights summing to 1.
Blend = Tuple[Tuple[int, float], ...]
Route = Union[int, Blend]


def as_route(pairs: Sequence[Tuple[int, float]]) -> Route:
    """The route of weighted gears: the same gears merged, zero weights
    dropped, a single gear as its id, else a :data:`Blend` in gear order
    (weights normalised to sum to 1)."""
    merged: Dict[int, float] = {}
    for gear, weight in pairs:
        if weight < 0:
            raise ValueError(f'gear {gear} has a negative weight {weight}')
        if weight > 0:
            merged[gear] = merged.get(gear, 0.0) + float(weight)
    if not merged:
        raise ValueError(f'no gear has a positive weight in {list(pairs)}')
    if len(merged) == 1:
        return next(iter(merged))
    total = sum(merged.values())
    return tuple((g, w / total) for g, w in sorted(merged.items()))


def heaviest_gear(route: Route) -> int:
    """The gear of a route that weighs most (the lower id on a tie)."""
    if isinstance(route, tuple):
        return max(route, key=lambda pair: (pair[1], -pair[0]))[0]
    return route


@MODELS.register_module()
class GearNNSegmentor(SegmentorWrapper):
    """Wraps any mmseg segmentor with per-gear adaptors.

    The base segmentor exists once; each distorted gear holds only its
    adaptor tensors (see :class:`GearBank`). Gear 0 is the clean input and
    runs the base unchanged.

    1. The ``forward`` call flow (every mode):

    .. code:: text

     forward(inputs, data_samples, mode)
      └─ split the batch by gear  (metainfo['distortion'], else default_gear)
          └─ for each gear: functional_call(segmentor, gear tensors, mode)
      └─ merge the per-gear results in the original sample order

    2. Training: base parameters have ``requires_grad=False`` and every BN
    layer of the base runs in eval mode; only BN layers whose statistics are
    in the adaptor run in train mode, on the gear's own buffers. Only the
    tensors of the gears present in a batch receive gradients.

    Args:
        segmentor (dict): config of the base mmseg segmentor.
        space (dict): the distortion space (the gear table).
        adaptor (str | list[str]): which tensors each gear holds: the path
            of a selection JSON written by ``tools/select_params.py``, a list
            of state-dict names, ``'bn'`` (BN affine and statistics: the
            per-level BN baseline) or ``'all'`` (every tensor: full per-level
            fine-tuning).
        default_gear (int): gear of a sample without distortion metadata.
        gears_file (str, optional): a compact gears file to load after the
            base (see :meth:`save_gears`).
        estimator (str, optional): a distortion estimator file
            (``tools/train_estimator.py``) for inputs without metadata.
        routing (str): ``'metadata'``, ``'estimate'``, ``'checked'`` or
            ``'default'`` (see :meth:`route`).
        level_routing (str): where a level that the gear table does not
            list runs (see :meth:`metadata_route`): ``'nearest'`` (default)
            on one gear as the space's ``snap`` decides, ``'interpolate'``
            (inference only) on the blend of the two gears whose levels
            bracket it.
        compound_routing (str): where a compound distortion (metadata with
            ``components``, see :class:`CompoundDistortion`) runs:
            ``'blend'`` (default; inference only) on the equal-weight blend
            of every component's gear(s), the best of the three on CamVid
            (``benchmarks/results/levels_between.json``); ``'dominant'`` on
            the gear of its most severe component, which can also train
            that gear; ``'first'`` on the gear of the component applied
            first.
        compound_severity (str | dict, optional): the severity of each
            (type, level) of the space, which ``'dominant'`` compares
            across types: the path of a ``DistortionIoUMetric`` report of
            the clean model (severity = its clean mIoU minus its mIoU at the
            level: the measured drop), or ``{type: {level: severity}}``.
            None (default) uses the level's rank within its type,
            ``(i + 1) / n`` for the i-th of n levels listed mild to harsh,
            a proxy that ties across types at the same rank.
        data_preprocessor (dict, optional): defaults to the segmentor's.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(
        self,
        segmentor: ConfigType,
        space: ConfigType,
        adaptor: Union[str, Sequence[str]] = 'bn',
        default_gear: int = CLEAN_GEAR,
        gears_file: Optional[str] = None,
        estimator: Optional[str] = None,
        routing: str = 'metadata',
        level_routing: str = 'nearest',
        compound_routing: str = 'blend',
        compound_severity: Optional[Union[str, dict]] = None,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptConfigType = None,
    ) -> None:
        super().__init__(
            segmentor, data_preprocessor=data_preprocessor, init_cfg=init_cfg
        )
        self.space = build_space(space)
        self.selection_meta: dict = {}
        names = expand_bn_stats(self.segmentor, self._resolve_adaptor(adaptor))
        self.gear_bank = GearBank(self.segmentor, names, self.space.num_gears)
        self.gear_bank.check_gear(default_gear)
        self.default_gear = default_gear
        if routing not in ROUTING_POLICIES:
            raise ValueError(
                f'routing must be one of {ROUTING_POLICIES}, got {routing!r}'
            )
        self.routing = routing
        if level_routing not in LEVEL_ROUTING:
            raise ValueError(
                f'level_routing must be one of {LEVEL_ROUTING}, got '
                f'{level_routing!r}'
            )
        self.level_routing = level_routing
        if compound_routing not in COMPOUND_ROUTING:
            raise ValueError(
                f'compound_routing must be one of {COMPOUND_ROUTING}, got '
                f'{compound_routing!r}'
            )
        self.compound_routing = compound_routing
        self.severity = gear_severity(self.space, compound_severity)
        # Kept out of the module tree: its weights are not the model's and
        # stay out of its checkpoints.
        object.__setattr__(self, 'estimator', None)
        if estimator is not None:
            from ..estimators import DistortionEstimator

            object.__setattr__(
                self,
                'estimator',
                DistortionEstimator.load(estimator, space=self.space),
            )
        elif routing in ('estimate', 'checked'):
            raise ValueError(f'routing={routing!r} needs estimator=PATH')
        self._active_gear: Route = CLEAN_GEAR
        self._base_adaptor: Optional[List[Tensor]] = None
        # Tensor lists for switching, rebuilt after _apply (e.g. .to()).
        self._switch_cache: Dict = {}
        self._adapted_bn = set(adapted_bn_layers(self.segmentor, names))
        for p in self.segmentor.parameters():
            p.requires_grad_(False)
        self.register_load_state_dict_post_hook(self._check_loaded)
        if gears_file is not None:
            self.load_gears(gears_file)

    # -- adaptor and gears -------------------------------------------------
    def _resolve_adaptor(self, adaptor) -> List[str]:
        if isinstance(adaptor, (list, tuple)):
            if not adaptor:
                raise ValueError('adaptor is an empty list of tensor names')
            return list(adaptor)
        if not isinstance(adaptor, str):
            raise TypeError(
                "adaptor must be 'bn', 'all', a selection JSON path or a "
                f'list of tensor names, got {type(adaptor).__name__}'
            )
        if adaptor == 'bn':
            return bn_names(self.segmentor)
        if adaptor == 'all':
            return list(adaptor_candidates(self.segmentor))
        if not adaptor.endswith('.json'):
            raise ValueError(
                f"unknown adaptor {adaptor!r}: use 'bn', 'all', the path of "
                'a selection JSON (tools/select_params.py) or a list of names'
            )
        return self._read_selection(adaptor)

    def _read_selection(self, path: str) -> List[str]:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f'selection file not found: {path} (make it with '
                'tools/select_params.py)'
            )
        with open(path, encoding='utf-8') as f:
            try:
                selection = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f'{path} is not valid JSON: {err}') from err
        names = selection.get('selected')
        if not isinstance(names, list) or not names:
            raise ValueError(f'{path} lists no selected tensors')
        space = selection.get('distortion_space')
        # The same gear table (types, order, levels); snap may differ: it
        # routes unlisted levels and changes no gear.
        if space is not None and build_space(space).gears() != (
            self.space.gears()
        ):
            raise ValueError(
                f'{path} was computed for another distortion space:\n'
                f'  file:  {build_space(space)}\n  model: {self.space}'
            )
        self.selection_meta = dict(
            file=os.path.abspath(path), method=selection.get('method')
        )
        return names

    @property
    def adaptor_names(self) -> List[str]:
        return list(self.gear_bank.names)

    def adaptor_fraction(self) -> float:
        """One gear's adaptor bytes over the base model's bytes."""
        total = sum(
            t.numel() * t.element_size()
            for t in self.segmentor.state_dict().values()
        )
        return self.gear_bank.adaptor_bytes() / total

    def save_gears(self, path: str) -> None:
        """Writes the adaptors of every gear (no base tensors)."""
        self.restore_base()
        self.gear_bank.save(path, self.segmentor, meta=self._gears_meta())

    def load_gears(self, path: str) -> None:
        """Loads a gears file made for this base, selection and gear table."""
        self.restore_base()
        self.gear_bank.load(
            path, self.segmentor, expected_meta=self._gears_meta()
        )

    def _gears_meta(self) -> dict:
        return dict(space=self.space.to_dict())

    def trainable_gear_parameters(self, gear: int) -> List[Tensor]:
        return [
            t
            for t in self.gear_bank.tensors(gear).values()
            if isinstance(t, torch.nn.Parameter)
        ]

    # -- routing -----------------------------------------------------------
    def severity_of(self, distortion_type: str, level) -> float:
        """The severity of (type, level) that ``'dominant'`` compares (see
        :func:`gear_severity`)."""
        return severity_of(self.space, self.severity, distortion_type, level)

    def _level_route(self, distortion: dict) -> Route:
        """The route of one (type, level, gear) record.

        A level the table lists runs on its gear, and a recorded gear must
        agree with it. A level the table does not list has no gear in this
        table, so a recorded gear can only be another table's (the one of
        the transform that made the record) and is ignored: the sample is
        routed by (type, level) under ``level_routing``.
        """
        dtype, gear = distortion.get('type'), distortion.get('gear')
        if dtype is None:
            self.gear_bank.check_gear(gear)
            return gear
        if dtype == CLEAN:
            from_table = CLEAN_GEAR
        else:
            level = distortion.get('level')
            if level is None:
                raise ValueError(
                    f'distortion metadata {distortion} has a type but no level'
                )
            listed = self.space.listed_level(dtype, level)
            if listed is None:
                if self.level_routing == 'interpolate':
                    return as_route(self.space.bracketing_gears(dtype, level))
                try:
                    return self.space.gear_id(dtype, level)
                except ValueError as err:
                    raise ValueError(
                        f"{err}, or give the model level_routing='interpolate'"
                    ) from err
            from_table = self.space.gear_id(dtype, listed)
        if gear is not None and gear != from_table:
            raise ValueError(
                f'distortion metadata {distortion} disagrees with the '
                f'gear table, which gives gear {from_table}'
            )
        return from_table

    def _compound_route(self, distortion: dict) -> Route:
        """The route of a compound record under ``compound_routing``."""
        components = list(distortion['components'])
        for c in components:
            if not isinstance(c, dict) or c.get('type') is None:
                raise ValueError(
                    f'compound distortion metadata {distortion}: every '
                    'component needs a type and a level'
                )
        routes = [self._level_route(dict(c, gear=None)) for c in components]
        if self.compound_routing == 'first':
            return routes[0]
        if self.compound_routing == 'dominant':
            severities = [
                0.0
                if c['type'] == CLEAN
                else self.severity_of(c['type'], c.get('level'))
                for c in components
            ]
            # max() keeps the first of equals: ties go to the first applied.
            return routes[severities.index(max(severities))]
        pairs = []
        for route in routes:
            pairs.extend((g, w / len(routes)) for g, w in _pairs(route))
        return as_route(pairs)

    def metadata_route(self, data_sample) -> Optional[Route]:
        """Where a sample's distortion metadata sends it (None without).

        - ``dict(gear)``: that gear;
        - ``dict(type, level[, gear])``: the gear of a listed level (a
          recorded gear must agree with it); a level the table does not
          list has no gear here, so its recorded gear, another table's, is
          ignored, and it runs under ``level_routing``: ``'nearest'`` as
          the space's ``snap`` says (an error unless ``snap='nearest'``),
          ``'interpolate'`` on the blend of
          :meth:`DistortionSpace.bracketing_gears`;
        - ``dict(components=[...])`` (a compound): each component is routed
          as above, then ``compound_routing`` picks: ``'first'``, the
          first component's route; ``'dominant'``, the route of the
          component of the highest :meth:`severity_of` (the first on a
          tie); ``'blend'``, every component's route at an equal share.

        Why a recorded gear is checked only for a listed level: a transform
        records the gear of its own space, which need not be this model's
        table (e.g. a sweep over levels in between the gears). For a level
        this table lists, a differing gear means the two tables disagree,
        which is an error; for a level it does not list, the recorded gear
        cannot name one of this table's gears, so (type, level) alone
        decide. A foreign table whose levels are also listed here would
        still clash: transforms on such a space take ``record_gear=False``.

        Returns:
            int | tuple | None: a gear id, a blend ``((gear, weight), ...)``
            or None.
        """
        distortion = (
            data_sample.metainfo.get('distortion')
            if data_sample is not None
            else None
        )
        if not distortion:
            return None
        if distortion.get('components'):
            return self._compound_route(distortion)
        return self._level_route(distortion)

    def metadata_gear(self, data_sample) -> Optional[int]:
        """The gear from a sample's distortion metadata (None without); the
        heaviest gear where the metadata routes to a blend."""
        route = self.metadata_route(data_sample)
        return None if route is None else heaviest_gear(route)

    def gear_of(self, data_sample) -> int:
        """The gear of one sample from its metadata, else the default."""
        gear = self.metadata_gear(data_sample)
        return self.default_gear if gear is None else gear

    def estimate_gears(self, inputs: Tensor, data_samples: OptSampleList):
        """The estimator's gear for each (preprocessed) input image."""
        if self.estimator is None:
            raise ValueError(
                f'routing={self.routing!r} needs a distortion estimator: '
                'give estimator=PATH (tools/train_estimator.py makes one)'
            )
        preprocessor = self.data_preprocessor
        images = inputs.detach()
        if hasattr(preprocessor, 'std') and getattr(
            preprocessor, '_enable_normalize', False
        ):
            images = images * preprocessor.std + preprocessor.mean
        crops = []
        for i, image in enumerate(images):
            meta = data_samples[i].metainfo if data_samples else {}
            h, w = meta.get('img_shape', image.shape[-2:])[:2]
            crops.append(image[:, :h, :w].clamp(0, 255))
        order = (
            'rgb'
            if getattr(preprocessor, '_channel_conversion', False)
            else 'bgr'
        )
        return self.estimator.predict_gears(crops, order).tolist()

    def route(
        self, inputs: Tensor, data_samples: OptSampleList
    ) -> List[Route]:
        """Where every sample runs under the routing policy.

        - ``'metadata'``: the distortion metadata (see
          :meth:`metadata_route`); the estimate where a sample has none
          (when an estimator is set), else ``default_gear``;
        - ``'estimate'``: always the estimate;
        - ``'checked'``: the metadata unless the estimate names a
          distortion type that the metadata's gear(s) do not (wrong or
          stale metadata), then the estimate;
        - ``'default'``: ``default_gear`` for every sample, metadata
          unread (e.g. gear 0: the clean model, as a reference).

        A route is a gear id or, under ``level_routing='interpolate'`` or
        ``compound_routing='blend'``, a blend ``((gear, weight), ...)``.
        Each sample's metainfo gets ``gear_routed`` (the gear, the heaviest
        one of a blend), ``gear_source`` and, for a blend, ``gear_blend``
        (``[[gear, weight], ...]``).
        """
        size = inputs.shape[0]
        if self.routing == 'default':
            meta = [None] * size
        else:
            meta = [
                self.metadata_route(data_samples[i] if data_samples else None)
                for i in range(size)
            ]
        need_estimate = self.routing in ('estimate', 'checked') or (
            self.routing == 'metadata'
            and self.estimator is not None
            and any(g is None for g in meta)
        )
        estimates = (
            self.estimate_gears(inputs, data_samples)
            if need_estimate
            else [None] * size
        )
        routes = []
        for i, (from_meta, estimate) in enumerate(zip(meta, estimates)):
            source = 'metadata'
            route = from_meta
            if self.routing == 'estimate' or (
                from_meta is None and estimate is not None
            ):
                route, source = estimate, 'estimate'
            elif self.routing == 'checked' and from_meta is not None:
                meta_types = {
                    self.space.level_of(g)[0] for g, _ in _pairs(from_meta)
                }
                if self.space.level_of(estimate)[0] not in meta_types:
                    route, source = estimate, 'estimate (metadata rejected)'
            if route is None:
                route, source = self.default_gear, 'default'
            routes.append(route)
            if data_samples:
                info = dict(
                    gear_routed=heaviest_gear(route), gear_source=source
                )
                if isinstance(route, tuple):
                    info['gear_blend'] = [list(pair) for pair in route]
                data_samples[i].set_metainfo(info)
        return routes

    def _group(
        self, inputs: Tensor, data_samples: OptSampleList
    ) -> Dict[Route, List[int]]:
        groups: Dict[Route, List[int]] = defaultdict(list)
        for i, route in enumerate(self.route(inputs, data_samples)):
            groups[route].append(i)
        return dict(groups)

    def _call(self, route: Route, method: str, *args):
        """Runs ``segmentor.<method>(*args)`` with the route's tensors.

        Training swaps the gear's tensors in for the call only
        (``functional_call``), so gradients reach the gear and the base is
        never written. Inference copies the gear's tensors (or a blend's)
        into the model when the route changes (the paper's switch: a copy
        of the adaptor), which costs nothing while consecutive inputs share
        a route.
        """
        if not self.training:
            if isinstance(route, tuple):
                self.switch_blend(route)
            else:
                self.switch_gear(route)
            return getattr(self.segmentor, method)(*args)
        if isinstance(route, tuple):
            raise ValueError(
                f'a training sample routes to the blend of gears {route} '
                f"(level_routing='interpolate' for a level off the gear "
                f"table, or compound_routing='blend'): blends are for "
                'inference only; train each gear on the levels of the '
                'gear table'
            )
        self.restore_base()
        tensors = self.gear_bank.tensors(route)
        if not tensors:
            return getattr(self.segmentor, method)(*args)
        caller = _MethodCaller(self.segmentor, method)
        return functional_call(
            caller,
            {f'module.{k}': v for k, v in tensors.items()},
            args=args,
            tie_weights=False,
        )

    def _live(self) -> List[Tensor]:
        live = self._switch_cache.get('live')
        if live is None:
            tensors = self._live_tensors()
            live = self._switch_cache['live'] = [
                tensors[n].data for n in self.gear_bank.names
            ]
        return live

    def _gear_source(self, gear: int) -> List[Tensor]:
        if gear == CLEAN_GEAR:
            return self._base_adaptor
        source = self._switch_cache.get(gear)
        if source is None:
            tensors = self.gear_bank.tensors(gear)
            source = self._switch_cache[gear] = [
                tensors[n].data for n in self.gear_bank.names
            ]
        return source

    @torch.no_grad()
    def switch_gear(self, gear: int) -> None:
        """Makes the model compute with ``gear`` (in place, for inference).

        The base's own adaptor tensors are kept aside while another gear is
        active and put back by :meth:`restore_base`.
        """
        self.gear_bank.check_gear(gear)
        if gear == self._active_gear:
            return
        live = self._live()
        if self._active_gear == CLEAN_GEAR:
            self._base_adaptor = [t.clone() for t in live]
        # One fused copy of the whole adaptor.
        torch._foreach_copy_(live, self._gear_source(gear))
        self._active_gear = gear
        if gear == CLEAN_GEAR:
            self._base_adaptor = None

    @torch.no_grad()
    def switch_blend(self, pairs: Sequence[Tuple[int, float]]) -> None:
        """Makes the model compute with a blend of gears (in place, for
        inference): every floating-point adaptor tensor becomes
        ``sum(w_g * t_g)``, every integer one (``num_batches_tracked``) is
        the heaviest gear's. :meth:`restore_base` puts the base back, as
        after :meth:`switch_gear`.

        Args:
            pairs (Sequence[tuple]): ``(gear, weight)`` pairs; the weights
                are normalised to sum to 1.
        """
        route = as_route(pairs)
        for gear, _ in _pairs(route):
            self.gear_bank.check_gear(gear)
        if not isinstance(route, tuple):
            self.switch_gear(route)
            return
        if route == self._active_gear:
            return
        live = self._live()
        if self._active_gear == CLEAN_GEAR:
            self._base_adaptor = [t.clone() for t in live]
        split = self._switch_cache.get('split')
        if split is None:
            floats = [i for i, t in enumerate(live) if t.is_floating_point()]
            ints = [i for i, t in enumerate(live) if not t.is_floating_point()]
            split = self._switch_cache['split'] = (
                floats,
                ints,
                [live[i] for i in floats],
                [live[i] for i in ints],
            )
        floats, ints, live_floats, live_ints = split
        sources = [self._gear_source(g) for g, _ in route]
        if ints:
            heaviest = [g for g, _ in route].index(heaviest_gear(route))
            torch._foreach_copy_(
                live_ints, [sources[heaviest][i] for i in ints]
            )
        (_, first), *rest = route
        torch._foreach_copy_(live_floats, [sources[0][i] for i in floats])
        torch._foreach_mul_(live_floats, first)
        for (_, weight), source in zip(rest, sources[1:]):
            torch._foreach_add_(
                live_floats, [source[i] for i in floats], alpha=weight
            )
        self._active_gear = route

    def _apply(self, fn, *args, **kwargs):
        if hasattr(self, '_switch_cache'):  # not while __init__ builds
            self.restore_base()
            self._switch_cache = {}
        return super()._apply(fn, *args, **kwargs)

    def restore_base(self) -> None:
        """Puts the base's tensors back after in-place gear switching."""
        if self._active_gear != CLEAN_GEAR:
            self.switch_gear(CLEAN_GEAR)

    def _live_tensors(self) -> Dict[str, Tensor]:
        # Only the adaptor's tensors: a full state_dict() would cost more
        # than the copy itself.
        live = {}
        for name in self.gear_bank.names:
            module_name, _, leaf = name.rpartition('.')
            module = self.segmentor.get_submodule(module_name)
            live[name] = getattr(module, leaf)
        return live

    def _split(self, inputs: Tensor, data_samples: OptSampleList):
        groups = self._group(inputs, data_samples)
        for gear, idx in groups.items():
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
            yield gear, idx, sub_inputs, sub_samples

    # -- BaseSegmentor API -------------------------------------------------
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Loss of each gear group, weighted by its share of the batch."""
        batch_size = inputs.shape[0]
        merged: Dict[str, Tensor] = {}
        trained = False
        for gear, idx, sub_inputs, sub_samples in self._split(
            inputs, data_samples
        ):
            if gear == CLEAN_GEAR:
                continue  # the clean gear is the base: nothing to learn
            with self._adapted_bn_frozen(len(idx) < 2):
                losses = self._call(gear, 'loss', sub_inputs, sub_samples)
            weight = len(idx) / batch_size
            for key, value in losses.items():
                value = value * weight
                merged[key] = merged[key] + value if key in merged else value
            trained = True
        if not trained:
            # A batch of clean samples only: a zero loss that keeps every
            # gear tensor in the graph, so the optimiser step is a no-op.
            zero = sum(p.sum() * 0 for p in self.gear_bank.parameters())
            merged['loss_no_distorted_samples'] = (
                zero if isinstance(zero, Tensor) else inputs.new_zeros(())
            )
        return merged

    def predict(
        self, inputs: Tensor, data_samples: OptSampleList = None
    ) -> SampleList:
        if data_samples is None:
            data_samples = self._default_samples(inputs)
        results: List = [None] * inputs.shape[0]
        for gear, idx, sub_inputs, sub_samples in self._split(
            inputs, data_samples
        ):
            for i, sample in zip(
                idx, self._call(gear, 'predict', sub_inputs, sub_samples)
            ):
                results[i] = sample
        return results

    def _forward(
        self, inputs: Tensor, data_samples: OptSampleList = None
    ) -> Tensor:
        return self._merge_tensors(inputs, data_samples, '_forward')

    def encode_decode(
        self, inputs: Tensor, batch_img_metas: List[dict]
    ) -> Tensor:
        from mmseg.structures import SegDataSample

        samples = [SegDataSample(metainfo=m) for m in batch_img_metas]
        out: List[Optional[Tensor]] = [None] * inputs.shape[0]
        for gear, idx, sub_inputs, sub_samples in self._split(inputs, samples):
            logits = self._call(
                gear,
                'encode_decode',
                sub_inputs,
                [s.metainfo for s in sub_samples],
            )
            for j, i in enumerate(idx):
                out[i] = logits[j]
        return torch.stack(out)

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        """Features of the default gear (no metadata to route by)."""
        return self._call(self.default_gear, 'extract_feat', inputs)

    def _merge_tensors(self, inputs, data_samples, method):
        out: List[Optional[Tensor]] = [None] * inputs.shape[0]
        for gear, idx, sub_inputs, sub_samples in self._split(
            inputs, data_samples
        ):
            result = self._call(gear, method, sub_inputs, sub_samples)
            for j, i in enumerate(idx):
                out[i] = result[j]
        return torch.stack(out)

    def _default_samples(self, inputs: Tensor) -> SampleList:
        from mmseg.structures import SegDataSample

        h, w = inputs.shape[-2:]
        return [
            SegDataSample(
                metainfo=dict(
                    ori_shape=(h, w),
                    img_shape=(h, w),
                    pad_shape=(h, w),
                    padding_size=[0, 0, 0, 0],
                )
            )
            for _ in range(inputs.shape[0])
        ]

    def init_weights(self) -> None:
        """Initialises the base, then starts every gear from it."""
        self.restore_base()
        super().init_weights()
        self.gear_bank.reset_from(self.segmentor)

    def state_dict(self, *args, **kwargs):
        # The base as it is, never a gear switched in for inference.
        self.restore_base()
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        self.restore_base()
        return super().load_state_dict(*args, **kwargs)

    # -- training mode: the base stays frozen ------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            self.restore_base()
            for name, module in self.segmentor.named_modules():
                if isinstance(module, _BatchNorm):
                    module.train(name in self._adapted_bn)
        return self

    @contextmanager
    def _adapted_bn_frozen(self, frozen: bool):
        """Runs adapted BN layers in eval mode while ``frozen``: a group of
        one image has no usable batch statistics (none at all after global
        pooling), so it uses, and leaves unchanged, the gear's running
        statistics."""
        modules = (
            [
                m
                for n, m in self.segmentor.named_modules()
                if n in self._adapted_bn and m.training
            ]
            if frozen
            else []
        )
        for m in modules:
            m.eval()
        try:
            yield
        finally:
            for m in modules:
                m.train()

    @property
    def has_adapted_bn(self) -> bool:
        """Whether the adaptor holds BN running statistics."""
        return bool(self._adapted_bn)

    @torch.no_grad()
    def recalibrate_bn(
        self, data_batches: Iterable[dict], batches_per_gear: int = 4
    ) -> Dict[int, int]:
        """Re-estimates each gear's BN running statistics under its final
        tensors.

        During gear training an adapted BN layer normalises with batch
        statistics while its running statistics move by ``momentum`` per
        batch of its gear: a gear that saw a few batches keeps mostly the
        clean base's statistics, and inference (which uses them) no longer
        matches training. This pass replaces them with the plain average
        over ``batches_per_gear`` batches of each gear (BN with
        ``momentum=None``), nothing else changes. In a distributed run each
        rank averages its own batches, then every gear's statistics are
        averaged over the ranks weighted by their batch counts: every rank
        holds what one process gets on the union of the ranks' batches.

        Args:
            data_batches (Iterable[dict]): training batches (as the
                dataloader yields them) with distortion metadata; consumed
                until every distorted gear has ``batches_per_gear`` groups
                of two or more samples, or the iterable ends.
            batches_per_gear (int): groups averaged per gear.

        Returns:
            dict: groups used per gear (over every rank); a gear missing
            from it kept its statistics.
        """
        if batches_per_gear < 1:
            raise ValueError(
                f'batches_per_gear must be >= 1, got {batches_per_gear}'
            )
        if not self._adapted_bn:
            return {}
        modules = {
            n: m
            for n, m in self.segmentor.named_modules()
            if n in self._adapted_bn
        }
        momenta = {n: m.momentum for n, m in modules.items()}
        wanted = set(range(1, self.gear_bank.num_gears))
        seen: Dict[int, int] = defaultdict(int)
        was_training = self.training
        self.train()
        try:
            for m in modules.values():
                m.momentum = None  # cumulative average
            for batch in data_batches:
                data = self.data_preprocessor(batch, True)
                for gear, idx, sub_inputs, sub_samples in self._split(
                    data['inputs'], data['data_samples']
                ):
                    if gear not in wanted or len(idx) < 2:
                        continue
                    if gear not in seen:
                        # Restart the average for this gear.
                        for t in self._gear_bn_buffers(gear, _BN_COUNTER):
                            t.zero_()
                    self._call(gear, '_forward', sub_inputs, sub_samples)
                    seen[gear] += 1
                    if seen[gear] >= batches_per_gear:
                        wanted.discard(gear)
                if not wanted:
                    break
        finally:
            for n, m in modules.items():
                m.momentum = momenta[n]
            self.train(was_training)
        if get_world_size() > 1:
            seen = self._merge_bn_stats_over_ranks(seen)
        return dict(sorted(seen.items()))

    def _gear_bn_buffers(self, gear: int, kinds: Tuple[str, ...]):
        """The gear's tensors for the ``kinds`` buffers (e.g.
        ``running_mean``) of its adapted BN layers."""
        for name, t in self.gear_bank.tensors(gear).items():
            layer, _, kind = name.rpartition('.')
            if kind in kinds and layer in self._adapted_bn:
                yield t

    @torch.no_grad()
    def _merge_bn_stats_over_ranks(self, seen: Dict[int, int]):
        """Each gear's adapted BN statistics averaged over the ranks,
        weighted by the batches each rank averaged (those of a rank
        without batches of the gear count for nothing)."""
        gears = range(1, self.gear_bank.num_gears)
        stats = [
            (g, t) for g in gears for t in self._gear_bn_buffers(g, _BN_STATS)
        ]
        counters = [
            (g, t)
            for g in gears
            for t in self._gear_bn_buffers(g, _BN_COUNTER)
        ]
        if not stats:
            return seen
        device = stats[0][1].device
        weights = torch.tensor(
            [float(seen.get(g, 0)) for g in gears],
            dtype=torch.float64,
            device=device,
        )
        flat = torch.cat(
            [t.double().reshape(-1) * weights[g - 1] for g, t in stats]
            + [weights]
        )
        all_reduce(flat, op='sum')
        sizes = [t.numel() for _, t in stats]
        *sums, totals = flat.split(sizes + [len(weights)])
        for (gear, t), total in zip(stats, sums):
            if totals[gear - 1] > 0:
                t.copy_((total / totals[gear - 1]).view_as(t))
        for gear, t in counters:
            if totals[gear - 1] > 0:
                t.fill_(int(totals[gear - 1]))
        return {g: int(totals[g - 1]) for g in gears if totals[g - 1] > 0}

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

    # -- checkpoints -------------------------------------------------------
    def _after_bare_checkpoint(self, state_dict, prefix) -> None:
        """A base checkpoint has no gears: every gear starts from the base."""
        for gear in range(1, self.gear_bank.num_gears):
            for name in self.gear_bank.names:
                key = (
                    f'{prefix}gear_bank.gears.{gear}.{name.replace(".", "::")}'
                )
                source = state_dict.get(f'{prefix}segmentor.{name}')
                if source is not None:
                    state_dict.setdefault(key, source.clone())

    @staticmethod
    def _check_loaded(module, incompatible_keys) -> None:
        missing = [
            k
            for k in incompatible_keys.missing_keys
            if k.startswith('segmentor.') or k.startswith('gear_bank.')
        ]
        if missing:
            raise RuntimeError(
                f'the checkpoint does not match this GearNNSegmentor: '
                f'{len(missing)} tensor(s) missing, e.g. {missing[:5]}'
            )


def gear_severity(
    space: DistortionSpace, severity: Optional[Union[str, dict]] = None
) -> List[float]:
    """The severity of every gear of ``space`` (0 for clean): what
    ``compound_routing='dominant'`` compares across distortion types.

    Args:
        space (DistortionSpace): the gear table.
        severity (str | dict, optional): None for the rank of each level
            within its type, ``(i + 1) / n`` for the i-th of n levels listed
            mild to harsh; the path of a ``DistortionIoUMetric`` report of
            the clean model for its measured drop (clean mIoU minus the
            level's mIoU); or ``{type: {level: severity}}``.

    Returns:
        list[float]: one value per gear id.
    """
    if severity is None:
        table = {
            t: {
                lv: (i + 1) / len(space.levels(t))
                for i, lv in enumerate(space.levels(t))
            }
            for t in space.types
        }
    elif isinstance(severity, str):
        table = _severity_from_report(severity)
    elif isinstance(severity, dict):
        table = severity
    else:
        raise TypeError(
            'compound_severity must be None, a report path or a dict, '
            f'got {type(severity).__name__}'
        )
    out = [0.0] * space.num_gears
    for gear, dtype, level in space.gears()[1:]:
        value = None
        for listed, v in (table.get(dtype) or {}).items():
            if math.isclose(float(listed), float(level), rel_tol=1e-6):
                value = v
                break
        if value is None:
            raise ValueError(
                f'compound_severity has no value for ({dtype}, {level}): '
                'give one for every (type, level) of the space'
            )
        out[gear] = float(value)
    return out


def severity_of(
    space: DistortionSpace, severity: List[float], distortion_type: str, level
) -> float:
    """The severity of (type, level) from per-gear ``severity``; a level
    between two gears gets the linear blend of theirs."""
    return sum(
        w * severity[g]
        for g, w in space.bracketing_gears(distortion_type, level)
    )


def _pairs(route: Route) -> Blend:
    """A route as ``((gear, weight), ...)``."""
    return route if isinstance(route, tuple) else ((route, 1.0),)


def _severity_from_report(path: str) -> Dict[str, Dict[str, float]]:
    """``{type: {level: drop}}`` from a ``DistortionIoUMetric`` report: the
    clean mIoU minus the mIoU at each level."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'compound_severity report not found: {path} (a '
            'DistortionIoUMetric output_file of the clean model)'
        )
    with open(path, encoding='utf-8') as f:
        report = json.load(f)
    clean = report.get('clean')
    if clean is None or not isinstance(report.get('levels'), dict):
        raise ValueError(
            f'{path} is not a DistortionIoUMetric report with a clean mIoU'
        )
    return {
        dtype: {
            level: clean - miou
            for level, miou in levels.items()
            if miou is not None
        }
        for dtype, levels in report['levels'].items()
    }


class _MethodCaller(torch.nn.Module):
    """Makes ``module.<method>`` callable through ``functional_call``."""

    def __init__(self, module: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *args):
        return getattr(self.module, self.method)(*args)
