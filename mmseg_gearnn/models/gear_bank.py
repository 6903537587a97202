"""Per-gear adaptor tensors over one shared base model.

A :class:`GearBank` holds, for every distorted gear, a copy of only the
adaptor tensors (parameters and BatchNorm running statistics) of a base
segmentor. The base is never copied: a forward pass for gear ``g`` swaps the
gear's tensors in with :func:`torch.func.functional_call`, so the base stays
bit-identical and gradients reach only the gear's tensors.
"""

import hashlib
import os
from typing import Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils.io import atomic_torch_save

GEARS_FORMAT_VERSION = 1
_BN_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


def _escape(name: str) -> str:
    # Module attribute names cannot hold '.'.
    return name.replace('.', '::')


def adaptor_candidates(model: nn.Module) -> Dict[str, Tensor]:
    """Every tensor an adaptor may hold: parameters and BN running stats."""
    tensors = dict(model.named_parameters())
    for module_name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and module.track_running_stats:
            for stat in ('running_mean', 'running_var'):
                tensors[f'{module_name}.{stat}'] = getattr(module, stat)
    return tensors


def bn_names(model: nn.Module) -> List[str]:
    """Names of every BN affine parameter and running statistic."""
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            for name, tensor in list(
                module.named_parameters(recurse=False)
            ) + list(module.named_buffers(recurse=False)):
                if name != 'num_batches_tracked':
                    names.append(f'{module_name}.{name}')
    return names


def expand_bn_stats(model: nn.Module, names: Iterable[str]) -> List[str]:
    """Adds a BN layer's other running buffers when one of them is adapted.

    A BN layer whose statistics are adapted runs in train mode during gear
    training and updates all three buffers in place, so all three must
    belong to the gear or the base would change.
    """
    names = list(dict.fromkeys(names))
    buffers = dict(model.named_buffers())
    extra = []
    for name in names:
        prefix, _, leaf = name.rpartition('.')
        if leaf in _BN_STATS:
            for stat in _BN_STATS:
                full = f'{prefix}.{stat}' if prefix else stat
                if full in buffers and full not in names and full not in extra:
                    extra.append(full)
    return names + extra


def adapted_bn_layers(model: nn.Module, names: Iterable[str]) -> List[str]:
    """Module names of BN layers whose running statistics are adapted."""
    names = set(names)
    return [
        module_name
        for module_name, module in model.named_modules()
        if isinstance(module, _BatchNorm)
        and f'{module_name}.running_mean' in names
    ]


class GearBank(nn.Module):
    """Adaptor tensors for gears ``1 .. num_gears - 1``; gear 0 is the base.

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

    def check_gear(self, gear: int) -> None:
        if (
            isinstance(gear, bool)
            or not isinstance(gear, int)
            or not (0 <= gear < self.num_gears)
        ):
            raise ValueError(
                f'gear {gear!r} is outside the gear table: '
                f'valid gears are 0..{self.num_gears - 1}'
            )

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

    def reset_from(
        self, base: nn.Module, gears: Optional[Iterable[int]] = None
    ) -> None:
        """Copies the base's current tensors into the given gears."""
        state = base.state_dict(keep_vars=True)
        with torch.no_grad():
            for gear in range(1, self.num_gears) if gears is None else gears:
                for n, t in self.tensors(gear).items():
                    t.copy_(state[n])

    def adaptor_bytes(self) -> int:
        """Bytes of one gear's adaptor."""
        if self.num_gears < 2:
            return 0
        return sum(
            t.numel() * t.element_size() for t in self.tensors(1).values()
        )

    # -- the compact gears file -------------------------------------------
    def signature(self, base: nn.Module) -> Dict[str, List[int]]:
        """Name -> shape of every adaptor tensor."""
        state = base.state_dict()
        return {n: list(state[n].shape) for n in self.names}

    def save(self, path: str, base: nn.Module, meta: Optional[dict] = None):
        """Writes every gear's adaptor (and nothing of the base) atomically.

        Each gear is stored as one flat tensor per dtype, in the order of
        :attr:`names`: a file of many small tensors would be mostly
        per-tensor overhead.
        """
        gears = {}
        for gear in range(1, self.num_gears):
            by_dtype: Dict[str, List[Tensor]] = {}
            for n, t in self.tensors(gear).items():
                by_dtype.setdefault(str(t.dtype), []).append(
                    t.detach().cpu().reshape(-1)
                )
            gears[gear] = {k: torch.cat(v) for k, v in by_dtype.items()}
        payload = dict(
            format_version=GEARS_FORMAT_VERSION,
            signature=self.signature(base),
            base_fingerprint=base_fingerprint(base),
            meta=dict(meta or {}),
            gears=gears,
        )
        atomic_torch_save(payload, path)

    def load(
        self, path: str, base: nn.Module, expected_meta: Optional[dict] = None
    ) -> dict:
        """Loads a gears file written by :meth:`save`; refuses one made for
        another model, selection or gear table with the mismatches listed."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f'gears file not found: {path}')
        try:
            payload = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as err:  # corrupt, truncated or unsafe
            raise ValueError(f'cannot read gears file {path}: {err}') from err
        if (
            not isinstance(payload, dict)
            or payload.get('format_version') != GEARS_FORMAT_VERSION
        ):
            raise ValueError(
                f'{path} is not a gears file of format version '
                f'{GEARS_FORMAT_VERSION}'
            )
        problems = []
        ours, theirs = self.signature(base), payload['signature']
        for n in sorted(set(ours) | set(theirs)):
            if n not in theirs:
                problems.append(f'{n}: missing from the file')
            elif n not in ours:
                problems.append(f"{n}: not in this model's adaptor")
            elif ours[n] != theirs[n]:
                problems.append(
                    f'{n}: shape {theirs[n]} in the file, '
                    f'{ours[n]} in the model'
                )
        if len(payload['gears']) != self.num_gears - 1:
            problems.append(
                f'the file has {len(payload["gears"])} gears, '
                f'the model {self.num_gears - 1} (+ clean)'
            )
        for key, value in (expected_meta or {}).items():
            if key in payload['meta'] and payload['meta'][key] != value:
                problems.append(
                    f'{key}: {payload["meta"][key]!r} in the file,'
                    f' {value!r} in the model'
                )
        if not problems and payload['base_fingerprint'] != base_fingerprint(
            base
        ):
            problems.append(
                'the base model differs (architecture or tensor '
                'shapes) from the one the gears were made for'
            )
        if problems:
            raise ValueError(
                f'gears file {path} does not match this model:\n  '
                + '\n  '.join(problems)
            )
        with torch.no_grad():
            for gear, flat in payload['gears'].items():
                offsets: Dict[str, int] = {}
                for n, t in self.tensors(int(gear)).items():
                    key = str(t.dtype)
                    start = offsets.get(key, 0)
                    t.copy_(flat[key][start : start + t.numel()].view_as(t))
                    offsets[key] = start + t.numel()
        return payload['meta']


def base_fingerprint(model: nn.Module) -> str:
    """A hash of every tensor name and shape of the base model."""
    h = hashlib.sha256()
    for n, t in model.state_dict().items():
        h.update(f'{n}:{tuple(t.shape)};'.encode())
    return h.hexdigest()[:16]
