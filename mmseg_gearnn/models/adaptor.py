"""The ``adaptor`` of a :class:`GearNNSegmentor`: which tensors of the base
each gear holds.

Given as ``'bn'``, ``'all'``, a list of state-dict names, the path of a
selection file (``tools/select_params.py``), or a budget, e.g.
``dict(budget=0.002, method='fisher')``. A budget is selected on the loaded
base before the gears train (``AdaptorSelectionHook``); until then the
segmentor holds no adaptor.
"""

import os
from typing import List, Sequence, Tuple, Union

from torch import nn

from ..distortions import DistortionSpace, build_space
from .adaptor_tensors import adaptor_candidates, bn_names
from .selection_file import load_selection

#: The scoring method of a budget adaptor that names none.
DEFAULT_METHOD = 'fisher'

NOT_SELECTED = (
    'the adaptor is given by budget and has not been selected yet: train '
    'with AdaptorSelectionHook in custom_hooks (it selects on the loaded '
    'base before the gears train), load a checkpoint of this model that '
    'holds gears, or select with tools/select_params.py and give '
    'model.adaptor=SELECTION.json'
)


def budget_request(adaptor: dict) -> dict:
    """A budget adaptor, its budget checked: ``budget`` a fraction of the
    model bytes in (0, 1], ``method`` (``'fisher'`` if unset) a name. The
    method and the other options are the selection's to check
    (:func:`mmseg_gearnn.selection.check_budget_request`, called where the
    run is completed and before the adaptor is selected).

    Raises:
        ValueError: naming the bad budget or method.
    """
    request = dict(adaptor)
    budget = request.get('budget')
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float))
        or not 0 < budget <= 1
    ):
        raise ValueError(
            'an adaptor by budget needs budget= a fraction of the model '
            f'bytes in (0, 1], e.g. dict(budget=0.002, method='
            f"'{DEFAULT_METHOD}'); got budget={budget!r}"
        )
    method = request.setdefault('method', DEFAULT_METHOD)
    if not isinstance(method, str):
        raise ValueError(
            'the method of an adaptor by budget is the name of a scoring '
            f'method, e.g. {DEFAULT_METHOD!r}; got {method!r}'
        )
    return request


def check_selected_in_one_process() -> None:
    """Raises inside a process group of several ranks: the gears of an
    adaptor by budget have no tensors until the selection, and a
    data-parallel wrapper is built before it."""
    from mmengine.dist import get_world_size

    if get_world_size() > 1:
        raise RuntimeError(
            'an adaptor by budget is selected in one process: under a '
            'launcher, select first (tools/dist_select_params.sh CONFIG '
            'N --checkpoint BASE.pth --out selection.json ...) and give '
            'model.adaptor=selection.json'
        )


def resolve_adaptor(
    segmentor: nn.Module,
    adaptor: Union[str, Sequence[str]],
    space: DistortionSpace,
) -> Tuple[List[str], dict]:
    """The tensor names an adaptor given by name, names or file stands for.

    Args:
        segmentor (nn.Module): the base segmentor.
        adaptor (str | list[str]): ``'bn'``, ``'all'``, a selection file
            or state-dict names.
        space (DistortionSpace): the model's gear table; a selection file
            must have been computed for the same one.

    Returns:
        tuple: the names, and what the selection file says of itself
        (``file``, ``method``, the ``base_sha256`` and ``checkpoint`` it
        was scored on; empty for the other forms).
    """
    if isinstance(adaptor, (list, tuple)):
        if not adaptor:
            raise ValueError('adaptor is an empty list of tensor names')
        return list(adaptor), {}
    if not isinstance(adaptor, str):
        raise TypeError(
            "adaptor must be 'bn', 'all', a selection JSON path, a list of "
            'tensor names or a budget dict, got '
            f'{type(adaptor).__name__}'
        )
    if adaptor == 'bn':
        return bn_names(segmentor), {}
    if adaptor == 'all':
        return list(adaptor_candidates(segmentor)), {}
    if not adaptor.endswith('.json'):
        raise ValueError(
            f"unknown adaptor {adaptor!r}: use 'bn', 'all', the path of a "
            'selection JSON (tools/select_params.py), a list of names or '
            f"a budget, e.g. dict(budget=0.002, method='{DEFAULT_METHOD}')"
        )
    record = load_selection(adaptor, model=segmentor)
    # The same gears as (type, level), in any order (a dumped config
    # sorts the types); snap may differ: it routes unlisted levels and
    # changes no gear.
    theirs = build_space(record['distortion_space'])
    if not space.same_gears(theirs):
        raise ValueError(
            f'{adaptor} was computed for another distortion space:\n'
            f'  file:  {theirs}\n  model: {space}'
        )
    meta = dict(
        file=os.path.abspath(adaptor),
        method=record['method'],
        base_sha256=record.get('base_sha256'),
        checkpoint=(record.get('checkpoint') or {}).get('path'),
    )
    return list(record['selected']), meta
