"""Per-gear adaptor tensors over one shared base model.

A :class:`GearBank` holds, for every distorted gear, a copy of only the
adaptor tensors (parameters and BatchNorm running statistics) of a base
segmentor. The base is never copied. Training runs gear ``g`` with the
gear's tensors swapped in for the call only (:meth:`GearBank.call`, through
:func:`torch.func.functional_call`), so the base stays bit-identical and
gradients reach only the gear's tensors; inference copies them into the
base in place (:meth:`GearBank.switch`) and :meth:`GearBank.restore` puts
the base's own back. Whatever reads or loads the base's state
(``load_state_dict`` with or without ``assign``, mmengine's
``load_checkpoint``, which bypasses a module's own overrides) meets the
base's own tensors: hooks on the base restore it first.

The gears file, which binds the gears to their base's weights, is
:mod:`.gear_file`; the names of the tensors an adaptor may hold are
:mod:`.adaptor_tensors`.
"""

import threading
from contextlib import contextmanager
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..distortions.space import CLEAN_GEAR, check_gear_id
from .adaptor_tensors import adapted_bn_layers
from .gear_file import base_sha256

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


def route_pairs(route: Route) -> Blend:
    """A route as ``((gear, weight), ...)``."""
    return route if isinstance(route, tuple) else ((route, 1.0),)


def _escape(name: str) -> str:
    # Module attribute names cannot hold '.'.
    return name.replace('.', '::')


def adaptor_names_in(state_dict: Dict[str, Tensor], prefix: str) -> List[str]:
    """The adaptor names of the :class:`GearBank` saved under ``prefix``
    in a state dict (its gear 1's keys); empty for a bank without gears or
    a state dict without a bank."""
    head = f'{prefix}gears.1.'
    return [
        key[len(head) :].replace('::', '.')
        for key in state_dict
        if key.startswith(head)
    ]


class GearBank(nn.Module):
    """Adaptor tensors for gears ``1 .. num_gears - 1``; gear 0 is the base.

    The bank is bound to its base: it switches gears into the base in
    place, and its gears file (:mod:`.gear_file`) is checked against it.
    The base stays a submodule of its owner only, so its tensors are not
    saved twice. An owner that replaces the bank calls
    :meth:`remove_hooks` on the old one.

    Every change of the tensors the base holds (switch, blend, restore)
    takes :attr:`lock`, a re-entrant lock; an owner that computes with a
    switched gear holds it across the switch and the computation, so that
    threads serving different gears cannot interleave.

    Args:
        base (nn.Module): the base segmentor (its tensors initialise every
            gear).
        names (Sequence[str]): adaptor tensor names, as in
            ``base.state_dict()``.
        num_gears (int): number of gears, the clean gear 0 included.
    """

    def __init__(
        self, base: nn.Module, names: Sequence[str], num_gears: int
    ) -> None:
        super().__init__()
        params = dict(base.named_parameters())
        buffers = dict(base.named_buffers())
        unknown = [n for n in names if n not in params and n not in buffers]
        if unknown:
            raise KeyError(
                f'{len(unknown)} adaptor tensor(s) are not in the model: '
                f'{unknown[:10]}{" ..." if len(unknown) > 10 else ""}; the '
                'selection was made for another model'
            )
        if num_gears < 1:
            raise ValueError(f'num_gears must be >= 1, got {num_gears}')
        self.names = list(names)
        self.param_names = [n for n in self.names if n in params]
        self.buffer_names = [n for n in self.names if n in buffers]
        self.num_gears = num_gears
        #: BN layers of the base whose running statistics the gears hold.
        self.adapted_bn = frozenset(adapted_bn_layers(base, self.names))
        self.gears = nn.ModuleList()
        for gear in range(num_gears):
            holder = nn.Module()
            if gear > 0:
                for n in self.param_names:
                    holder.register_parameter(
                        _escape(n),
                        nn.Parameter(
                            params[n].detach().clone(), requires_grad=True
                        ),
                    )
                for n in self.buffer_names:
                    holder.register_buffer(
                        _escape(n), buffers[n].detach().clone()
                    )
            self.gears.append(holder)
        # Outside the module tree: the owner holds the base.
        object.__setattr__(self, '_base', base)
        self._active: Route = CLEAN_GEAR
        self._base_adaptor: Optional[List[Tensor]] = None
        # Tensor lists for switching, dropped by invalidate().
        self._switch_cache: Dict = {}
        self.lock = threading.RLock()
        # On the modules themselves, not in an owner's overrides: mmengine's
        # load_checkpoint walks the modules and calls only these hooks.
        # Before a load the base gets its own tensors back (else a later
        # restore() would overwrite what was loaded); after it, the cached
        # tensor lists are dropped (load_state_dict(..., assign=True)
        # replaces the tensors, and a switch would write into orphans).
        self._load_hooks = []
        for module in (base, self):
            self._load_hooks += [
                module._register_load_state_dict_pre_hook(self._before_load),
                module.register_load_state_dict_post_hook(self._after_load),
            ]

    def remove_hooks(self) -> None:
        """Detaches the bank's load hooks from the base (and itself), for
        an owner that replaces the bank: the base no longer restores or
        invalidates a bank that is gone."""
        with self.lock:
            self.restore()
            for handle in self._load_hooks:
                handle.remove()
            self._load_hooks = []

    @property
    def base(self) -> nn.Module:
        """The base segmentor the gears switch into."""
        return self._base

    def _before_load(self, *args) -> None:
        self.restore()

    def _after_load(self, *args) -> None:
        self.invalidate()

    def __getstate__(self):
        # A lock cannot be copied or pickled: a copy gets its own.
        state = self.__dict__.copy()
        del state['lock']
        return state

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        self.lock = threading.RLock()

    def check_gear(self, gear: int) -> None:
        check_gear_id(gear, self.num_gears)

    def tensors(self, gear: int) -> Dict[str, Tensor]:
        """The gear's adaptor tensors by base name (empty for gear 0)."""
        self.check_gear(gear)
        if gear == 0:
            return {}
        holder = self.gears[gear]
        return {
            n: getattr(holder, _escape(n))
            for n in self.param_names + self.buffer_names
        }

    def bn_buffers(self, gear: int, kinds: Sequence[str]) -> Iterable[Tensor]:
        """The gear's tensors for the ``kinds`` buffers (e.g.
        :data:`~.adaptor_tensors.BN_STATS`) of its adapted BN layers."""
        for name, t in self.tensors(gear).items():
            layer, _, kind = name.rpartition('.')
            if kind in kinds and layer in self.adapted_bn:
                yield t

    def fill_from_base(
        self, state_dict: dict, base_prefix: str, prefix: str
    ) -> None:
        """Adds each gear's missing keys to a state dict (a checkpoint of
        the bare base has none), copied from the base's keys: every gear
        starts from the base."""
        for gear in range(1, self.num_gears):
            for name in self.names:
                source = state_dict.get(base_prefix + name)
                if source is not None:
                    state_dict.setdefault(
                        f'{prefix}gears.{gear}.{_escape(name)}', source.clone()
                    )

    @contextmanager
    def adapted_bn_frozen(self, frozen: bool):
        """Runs adapted BN layers in eval mode while ``frozen``: a group of
        one image has no usable batch statistics (none at all after global
        pooling), so it uses, and leaves unchanged, the gear's running
        statistics."""
        modules = (
            [
                m
                for n, m in self._base.named_modules()
                if n in self.adapted_bn and m.training
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

    def reset_from(self, gears: Optional[Iterable[int]] = None) -> None:
        """Copies the base's current tensors into the given gears."""
        state = self._base.state_dict(keep_vars=True)
        with torch.no_grad():
            for gear in range(1, self.num_gears) if gears is None else gears:
                for n, t in self.tensors(gear).items():
                    t.copy_(state[n])

    # -- running the base with a gear ---------------------------------------
    def call(self, gear: int, method: str, *args):
        """``base.<method>(*args)`` with the gear's tensors swapped in for
        this call only (``functional_call``): gradients reach the gear and
        the base is never written. The base must hold its own tensors."""
        tensors = self.tensors(gear)
        if not tensors:
            return getattr(self._base, method)(*args)
        return functional_call(
            _MethodCaller(self._base, method),
            {f'module.{k}': v for k, v in tensors.items()},
            args=args,
            tie_weights=False,
        )

    @property
    def active(self) -> Route:
        """The route whose tensors the base holds now (0: its own)."""
        return self._active

    def switch(self, route: Route) -> None:
        """Makes the base compute with ``route`` (a gear or a blend)."""
        if isinstance(route, tuple):
            self.switch_blend(route)
        else:
            self.switch_gear(route)

    @torch.no_grad()
    def switch_gear(self, gear: int) -> None:
        """Makes the base compute with ``gear`` (in place, for inference).

        The base's own adaptor tensors are kept aside while another gear is
        active and put back by :meth:`restore`. A switch is one fused copy
        of the adaptor and costs nothing while the gear stays the same.
        """
        self.check_gear(gear)
        with self.lock:
            if gear == self._active:
                return
            live = self._live()
            if self._active == CLEAN_GEAR:
                self._base_adaptor = [t.clone() for t in live]
            torch._foreach_copy_(live, self._gear_source(gear))
            self._active = gear
            if gear == CLEAN_GEAR:
                self._base_adaptor = None

    @torch.no_grad()
    def switch_blend(self, pairs: Sequence[Tuple[int, float]]) -> None:
        """Makes the base compute with a blend of gears (in place, for
        inference): every floating-point adaptor tensor becomes
        ``sum(w_g * t_g)``, every integer one (``num_batches_tracked``) is
        the heaviest gear's. :meth:`restore` puts the base back, as after
        :meth:`switch_gear`.

        Args:
            pairs (Sequence[tuple]): ``(gear, weight)`` pairs; the weights
                are normalised to sum to 1.
        """
        route = as_route(pairs)
        for gear, _ in route_pairs(route):
            self.check_gear(gear)
        if not isinstance(route, tuple):
            self.switch_gear(route)
            return
        with self.lock:
            self._switch_blend(route)

    def _switch_blend(self, route: Blend) -> None:
        if route == self._active:
            return
        live = self._live()
        if self._active == CLEAN_GEAR:
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
        self._active = route

    def restore(self) -> None:
        """Puts the base's own tensors back after switching."""
        with self.lock:
            if self._active != CLEAN_GEAR:
                self.switch_gear(CLEAN_GEAR)

    def invalidate(self) -> None:
        """Restores the base and forgets the cached tensor lists: call it
        before the tensors move (``.to()``, ``.half()``...) or are replaced
        (a load with ``assign=True`` calls it)."""
        with self.lock:
            self.restore()
            self._switch_cache = {}

    def live_tensors(self) -> Dict[str, Tensor]:
        """The base's adaptor tensors by name (what a switch writes)."""
        # Only the adaptor's tensors: a full state_dict() would cost more
        # than the copy itself.
        live = {}
        for name in self.names:
            module_name, _, leaf = name.rpartition('.')
            module = self._base.get_submodule(module_name)
            live[name] = getattr(module, leaf)
        return live

    def _live(self) -> List[Tensor]:
        live = self._switch_cache.get('live')
        if live is None:
            tensors = self.live_tensors()
            live = self._switch_cache['live'] = [
                tensors[n].data for n in self.names
            ]
        return live

    def _gear_source(self, gear: int) -> List[Tensor]:
        if gear == CLEAN_GEAR:
            return self._base_adaptor
        source = self._switch_cache.get(gear)
        if source is None:
            tensors = self.tensors(gear)
            source = self._switch_cache[gear] = [
                tensors[n].data for n in self.names
            ]
        return source

    def adaptor_bytes(self) -> int:
        """Bytes of one gear's adaptor."""
        if self.num_gears < 2:
            return 0
        return sum(
            t.numel() * t.element_size() for t in self.tensors(1).values()
        )

    def base_sha256(self) -> str:
        """:func:`~.gear_file.base_sha256` of the base, its own tensors
        restored."""
        with self.lock:
            self.restore()
            return base_sha256(self._base)


class _MethodCaller(nn.Module):
    """Makes ``module.<method>`` callable through ``functional_call``."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *args):
        return getattr(self.module, self.method)(*args)
