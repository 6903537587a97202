"""Distributed runs on mmengine's launchers, GPU or CPU.

mmengine 0.10's ``init_dist(launcher='pytorch')`` calls
``torch.cuda.set_device``, which fails on a machine without CUDA, and its
Runner wraps the model with ``device_ids=[LOCAL_RANK]``, which
``DistributedDataParallel`` refuses for a model on the CPU. The helpers
below make ``torchrun ... --launcher pytorch`` (``tools/dist_train.sh``,
``tools/dist_select_params.sh``) work on both: on a CPU-only machine the
process group uses the ``gloo`` backend and the model wrapper is
:class:`~mmseg_gearnn.engine.GearNNDistributedDataParallel`.
"""

import datetime
import logging
import os
from typing import Any, Callable, Optional, Sequence, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.device import (
    is_cuda_available,
    is_mlu_available,
    is_musa_available,
    is_npu_available,
)
from mmengine.dist import get_dist_info
from mmengine.dist import init_dist as mmengine_init_dist
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

#: The model wrapper that distributed training gets when the config names
#: none: DDP that also runs on the CPU and keeps the gears of every rank
#: identical.
DEFAULT_MODEL_WRAPPER = 'GearNNDistributedDataParallel'


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a data-parallel wrapper (``runner.model`` under a
    launcher), or ``model`` itself where it is not wrapped."""
    return model.module if is_model_wrapper(model) else model


def _cpu_only() -> bool:
    return not (
        is_cuda_available()
        or is_mlu_available()
        or is_npu_available()
        or is_musa_available()
    )


def init_dist(launcher: str, backend: str = 'nccl', **kwargs) -> None:
    """``mmengine.dist.init_dist`` that also works without CUDA.

    On a machine with an accelerator this is mmengine's ``init_dist``. On
    a CPU-only machine, ``launcher='pytorch'`` joins the process group
    from the environment that ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``) without selecting a CUDA device, and
    the ``nccl`` backend (mmseg's default) is replaced by ``gloo``.

    Args:
        launcher (str): ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        backend (str): the torch.distributed backend.
        **kwargs: passed to ``init_process_group``; ``timeout`` is in
            seconds, as in mmengine's ``env_cfg.dist_cfg``.
    """
    if launcher != 'pytorch' or not _cpu_only():
        mmengine_init_dist(launcher, backend=backend, **kwargs)
        return
    if backend == 'nccl':
        print_log(
            'no CUDA device: the process group uses the gloo backend '
            'instead of nccl',
            logger='current',
            level=logging.WARNING,
        )
        backend = 'gloo'
    timeout = kwargs.pop('timeout', None)
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    kwargs.pop('init_backend', None)
    torch_dist.init_process_group(
        backend=backend,
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs,
    )


def setup_dist_train(cfg) -> Tuple[int, int]:
    """Prepares a training config for its launcher; returns (rank, world).

    For ``cfg.launcher != 'none'`` it joins the process group with
    ``cfg.env_cfg.dist_cfg`` (see :func:`init_dist`; the Runner then skips
    its own, CUDA-only, initialisation) and, if the config names no
    ``model_wrapper_cfg``, sets it to :data:`DEFAULT_MODEL_WRAPPER` with
    the config's ``find_unused_parameters`` (when given).

    Args:
        cfg (Config): the training config, ``launcher`` set.

    Returns:
        tuple[int, int]: this process's rank and the world size.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none':
        return 0, 1
    if not torch_dist.is_initialized():
        dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
        init_dist(launcher, **dist_cfg)
    if cfg.get('model_wrapper_cfg', None) is None:
        wrapper = dict(type=DEFAULT_MODEL_WRAPPER)
        if cfg.get('find_unused_parameters', None) is not None:
            wrapper['find_unused_parameters'] = cfg.find_unused_parameters
        cfg.model_wrapper_cfg = wrapper
    return get_dist_info()


def teardown_dist() -> None:
    """Leaves the process group once every rank got here (no-op without
    one). A rank that exits while the group lives can be aborted in gloo's
    teardown ("terminate called without an active exception") and fail
    a run that finished."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


@torch.no_grad()
def mean_over_ranks(
    tensors: Sequence[torch.Tensor],
    weights: torch.Tensor,
    group: Optional[Any] = None,
) -> torch.Tensor:
    """Replaces every tensor by its weighted mean over the ranks, in place.

    Tensor ``i`` of a rank weighs ``weights[i]`` of that rank; a tensor
    whose weights sum to 0 over the ranks is left as it is. One
    all-reduce (in float64) for everything, no host sync per tensor.

    Args:
        tensors (Sequence[Tensor]): the same tensors on every rank.
        weights (Tensor): this rank's weight of each tensor.
        group (ProcessGroup, optional): None for the default group.

    Returns:
        Tensor: the weights of each tensor summed over the ranks (float64).
    """
    weights = weights.to(torch.float64)
    if not tensors:
        return weights
    flat = torch.cat(
        [t.double().reshape(-1) * w for t, w in zip(tensors, weights)]
        + [weights]
    )
    torch_dist.all_reduce(flat, torch_dist.ReduceOp.SUM, group)
    *sums, totals = flat.split([t.numel() for t in tensors] + [len(tensors)])
    for t, total_sum, total in zip(tensors, sums, totals):
        mean = torch.where(
            total > 0, total_sum / total, t.double().reshape(-1)
        )
        t.copy_(mean.view_as(t))
    return totals


def _launcher_rank(launcher: str) -> int:
    """This process's rank, read before the process group exists."""
    key = dict(slurm='SLURM_PROCID', mpi='OMPI_COMM_WORLD_RANK').get(
        launcher, 'RANK'
    )
    return int(os.environ.get(key, 0))


def run_on_main_process(
    fn: Callable[[], Any],
    launcher: str = 'none',
    dist_cfg: Optional[dict] = None,
) -> Any:
    """Runs ``fn()`` once, on rank 0, and returns its result on every rank.

    Rank 0 calls ``fn`` *before* it joins the process group, so ``fn``
    runs exactly as in a single process (its data loaders are not sharded
    and its results do not depend on the world size); the other ranks wait
    in the process group's rendezvous (bounded by ``dist_cfg['timeout']``,
    in seconds; torch's default otherwise), then receive the result. An
    exception on rank 0 is raised on every rank. The process group is
    destroyed before returning.

    Args:
        fn (callable): the work; its result must be picklable.
        launcher (str): ``'none'`` calls ``fn`` directly.
        dist_cfg (dict, optional): the config's ``env_cfg.dist_cfg``.

    Returns:
        The result of ``fn()``.
    """
    if launcher == 'none':
        return fn()
    if torch_dist.is_initialized():
        raise RuntimeError(
            'run_on_main_process joins the process group itself; call it '
            'before torch.distributed is initialised'
        )
    rank = _launcher_rank(launcher)
    payload, error = [None], None
    if rank == 0:
        try:
            payload = [('ok', fn())]
        except Exception as err:  # reported to the waiting ranks too
            payload, error = [('error', repr(err))], err
    init_dist(launcher, **dict(dist_cfg or {}))
    try:
        torch_dist.broadcast_object_list(payload, src=0)
    finally:
        torch_dist.destroy_process_group()
    status, value = payload[0]
    if error is not None:
        raise error
    if status == 'error':
        raise RuntimeError(f'rank 0 failed: {value}')
    return value


__all__ = [
    'DEFAULT_MODEL_WRAPPER',
    'init_dist',
    'mean_over_ranks',
    'run_on_main_process',
    'setup_dist_train',
]
