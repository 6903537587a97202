"""The tensors an adaptor may hold, by name: the one definition of the BN
buffer names and of the candidate set (parameters and BN running
statistics of the modules the prediction uses) that the gear bank, the
adaptor forms and the selection share.
"""

from typing import Container, Dict, Iterable, List, Optional, Sequence

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

#: A BN layer's running statistics: learned state an adaptor may hold.
BN_STATS = ('running_mean', 'running_var')
#: A BN layer's step counter: travels with its statistics, never scored.
BN_COUNTER = 'num_batches_tracked'
BN_BUFFERS = BN_STATS + (BN_COUNTER,)


def bn_modules(model: nn.Module) -> Dict[str, _BatchNorm]:
    """Every BatchNorm layer (SyncBN included) by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm)
    }


def training_only_modules(model: nn.Module) -> List[str]:
    """Submodules that only feed the training loss, never the prediction.

    An mmseg segmentor's ``auxiliary_head`` adds a loss during training and
    is skipped at inference, so a gear holding its tensors would spend
    budget on weights that cannot change any output: they are no adaptor
    candidates.
    """
    if getattr(model, 'with_auxiliary_head', False):
        return ['auxiliary_head']
    return []


def in_modules(name: str, modules: Sequence[str]) -> bool:
    """Whether tensor (or module) ``name`` belongs to one of ``modules``
    (by name)."""
    return any(name == m or name.startswith(m + '.') for m in modules)


def adaptor_candidates(model: nn.Module) -> Dict[str, Tensor]:
    """Every tensor an adaptor may hold: parameters and BN running stats
    (never the step counter), parameters first, of every module but the
    :func:`training_only_modules`."""
    skip = training_only_modules(model)
    tensors = {
        name: p
        for name, p in model.named_parameters()
        if not in_modules(name, skip)
    }
    for module_name, module in bn_modules(model).items():
        if module.track_running_stats and not in_modules(module_name, skip):
            for stat in BN_STATS:
                tensors[f'{module_name}.{stat}'] = getattr(module, stat)
    return tensors


def bn_names(model: nn.Module) -> List[str]:
    """Names of every BN affine parameter and running statistic (the
    ``'bn'`` adaptor), but the :func:`training_only_modules`'."""
    skip = training_only_modules(model)
    names = []
    for module_name, module in bn_modules(model).items():
        if in_modules(module_name, skip):
            continue
        for name, tensor in list(
            module.named_parameters(recurse=False)
        ) + list(module.named_buffers(recurse=False)):
            if name != BN_COUNTER:
                names.append(f'{module_name}.{name}')
    return names


def expand_bn_stats(model: nn.Module, names: Iterable[str]) -> List[str]:
    """Adds a BN layer's other running buffers when one of them is adapted.

    A BN layer whose statistics are adapted runs in train mode during gear
    training and updates all three buffers in place, so all three must
    belong to the gear or the base would change.
    """
    return with_bn_buffers(names, dict(model.named_buffers()))


def with_bn_buffers(
    names: Iterable[str], buffers: Optional[Container[str]] = None
) -> List[str]:
    """``names`` and, after them, the BN buffers that go with an adapted
    running statistic (:func:`expand_bn_stats`): those in ``buffers``, or
    by name alone when ``buffers`` is None."""
    names = list(dict.fromkeys(names))
    extra = []
    for name in names:
        prefix, _, leaf = name.rpartition('.')
        if leaf in BN_BUFFERS:
            for stat in BN_BUFFERS:
                full = f'{prefix}.{stat}' if prefix else stat
                if (
                    (buffers is None or full in buffers)
                    and full not in names
                    and full not in extra
                ):
                    extra.append(full)
    return names + extra


def adaptor_size_text(
    names: Sequence[str], fraction: Optional[float] = None
) -> str:
    """The one wording of an adaptor's size, in selection output and in
    the training log: the tensors a gear holds, and how many of them were
    selected when the BN buffers that go with selected statistics add to
    them, e.g. ``'152 adaptor tensors per gear (146 selected + 6 BN
    buffers that go with them; 0.2000% of the model)'``.

    Args:
        names (Sequence[str]): the adaptor's tensor names, as selected or
            as the gears hold them.
        fraction (float, optional): one gear's share of the model bytes.
    """
    chosen = list(dict.fromkeys(names))
    held = with_bn_buffers(chosen)
    details = []
    if len(held) > len(chosen):
        details.append(
            f'{len(chosen)} selected + {len(held) - len(chosen)} BN buffers '
            'that go with them'
        )
    if fraction is not None:
        details.append(f'{fraction:.4%} of the model')
    plural = '' if len(held) == 1 else 's'
    text = f'{len(held)} adaptor tensor{plural} per gear'
    return text + (f' ({"; ".join(details)})' if details else '')


def adapted_bn_layers(model: nn.Module, names: Iterable[str]) -> List[str]:
    """Module names of BN layers whose running statistics are adapted."""
    names = set(names)
    return [
        module_name
        for module_name in bn_modules(model)
        if f'{module_name}.{BN_STATS[0]}' in names
    ]
