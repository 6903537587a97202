"""Data-parallel gear training: DDP for a GearNNSegmentor, GPU or CPU."""

from itertools import chain
from typing import Dict, List, Optional, Union

import torch
import torch.distributed as torch_dist
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper

# mmengine's registry: Runner.wrap_model looks the type up there.
from mmengine.registry import MODEL_WRAPPERS
from torch import Tensor

from ..models.adaptor_tensors import BN_COUNTER, BN_STATS
from ..utils.dist import mean_over_ranks


@MODEL_WRAPPERS.register_module()
class GearNNDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for gear training (any model works).

    - **CPU**: a model whose tensors are all on the CPU is wrapped without
      ``device_ids`` (the Runner passes ``[LOCAL_RANK]``, which DDP refuses
      for a CPU module), so ``torchrun --launcher pytorch`` trains on the
      ``gloo`` backend.
    - **Unused gears**: only the gears present in a rank's batch take part
      in its backward pass (a rank whose batch is clean takes none). For a
      model with a ``gear_bank`` the gradients are therefore not reduced
      by DDP's reducer (which, on a rank whose backward reaches no
      parameter, never joins the all-reduce, and which marks every
      parameter of a rank that touched all of them as used): the forward
      runs under ``no_sync`` and, before each optimiser step, one
      all-reduce counts the ranks that gave each tensor a gradient and a
      second averages the gradients of the tensors some rank used (zero
      where a rank did not). A tensor that no rank used keeps no gradient
      (None), so the optimiser skips it on every rank: an absent gear
      and its optimiser state never move. As the model weights each
      gear's loss by its share of the batch, this is the gradient of a
      single process on the union of the ranks' batches.
    - **Gear BN statistics**: buffers are not gradients, so after every
      training step the running statistics of the gear bank are merged
      over the ranks: each rank's update of a BN layer of a gear (new
      minus old value) is averaged over the ranks that updated it (ranks
      whose batch had that gear as a group of two or more images), and
      ``num_batches_tracked`` takes the largest value. Every rank thus
      holds the same gears, and a gear met on one rank only gets that
      rank's update unchanged. The base's buffers never change (its BN
      layers run in eval mode).

    Args:
        module (nn.Module): the model.
        device_ids (list[int], optional): ignored for a CPU model.
        find_unused_parameters (bool, optional): default True for a model
            with a ``gear_bank`` (whose gradients this wrapper reduces
            itself), else False.
        broadcast_buffers (bool): as in DDP; False as in mmengine's
            default wrapper.
        sync_gear_buffers (bool): merge the gear bank's buffers over the
            ranks after every training step.
        **kwargs: passed to ``MMDistributedDataParallel``.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        device_ids: Optional[List[Union[int, torch.device]]] = None,
        find_unused_parameters: Optional[bool] = None,
        broadcast_buffers: bool = False,
        sync_gear_buffers: bool = True,
        **kwargs,
    ) -> None:
        on_cpu = all(
            t.device.type == 'cpu'
            for t in chain(module.parameters(), module.buffers())
        )
        if on_cpu:
            device_ids = None
            kwargs.pop('output_device', None)
        if find_unused_parameters is None:
            find_unused_parameters = hasattr(module, 'gear_bank')
        super().__init__(
            module=module,
            device_ids=device_ids,
            find_unused_parameters=find_unused_parameters,
            broadcast_buffers=broadcast_buffers,
            **kwargs,
        )
        self.sync_gear_buffers = sync_gear_buffers

    def train_step(
        self, data: Union[dict, tuple, list], optim_wrapper: OptimWrapper
    ) -> Dict[str, Tensor]:
        """``MMDistributedDataParallel.train_step``, with the gradients of
        a gear model reduced as the class says, then the gear bank's
        buffers merged over the ranks."""
        buffers = self._gear_buffers() if self.sync_gear_buffers else {}
        before = {n: b.detach().clone() for n, b in buffers.items()}
        if hasattr(self.module, 'update_gears'):
            with optim_wrapper.optim_context(self), self.no_sync():
                data = self.module.data_preprocessor(data, training=True)
                losses = self._run_forward(data, mode='loss')
            parsed_loss, log_vars = self.module.parse_losses(losses)
            self.module.update_gears(
                optim_wrapper, parsed_loss, self._reduce_used_grads
            )
        else:
            log_vars = super().train_step(data, optim_wrapper)
        if buffers:
            self._merge_buffers(buffers, before)
        return log_vars

    @torch.no_grad()
    def _reduce_used_grads(self) -> None:
        """Averages over the ranks the gradient of every trainable tensor
        that some rank gave one (zero where a rank did not); a tensor that
        no rank used keeps no gradient."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        if not params:
            return
        used = torch.tensor(
            [p.grad is not None for p in params],
            dtype=torch.int32,
            device=params[0].device,
        )
        torch_dist.all_reduce(
            used, torch_dist.ReduceOp.SUM, self.process_group
        )
        world = torch_dist.get_world_size(self.process_group)
        by_dtype: Dict[torch.dtype, List[Tensor]] = {}
        for p, count in zip(params, used.tolist()):
            if count == 0:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads]).div_(world)
            torch_dist.all_reduce(
                flat, torch_dist.ReduceOp.SUM, self.process_group
            )
            for g, part in zip(grads, flat.split([g.numel() for g in grads])):
                g.copy_(part.view_as(g))

    def _gear_buffers(self) -> Dict[str, Tensor]:
        bank = getattr(self.module, 'gear_bank', None)
        if bank is None:
            return {}
        return dict(bank.named_buffers())

    @torch.no_grad()
    def _merge_buffers(
        self, buffers: Dict[str, Tensor], before: Dict[str, Tensor]
    ) -> None:
        counters = [n for n in buffers if n.endswith(BN_COUNTER)]
        stats = [n for n in buffers if not n.endswith(BN_COUNTER)]
        # Per tensor: this rank's update, and whether this rank made it
        # (the tensor or its BN layer's counter moved).
        # Tensors only (no host sync per buffer).
        deltas, made = [], []
        for n in stats:
            new, old = buffers[n].double(), before[n].double()
            deltas.append(new - old)
            moved = (new != old).any()
            counter = _counter_of(n)
            if counter in before:
                moved = moved | (before[counter] != buffers[counter]).any()
            made.append(moved.double().reshape(1))
        if counters:
            flat = torch.stack([buffers[n].reshape(()) for n in counters])
            torch_dist.all_reduce(
                flat, torch_dist.ReduceOp.MAX, self.process_group
            )
            for n, value in zip(counters, flat):
                buffers[n].copy_(value)
        if not stats:
            return
        # Each update averaged over the ranks that made it.
        mean_over_ranks(deltas, torch.cat(made), self.process_group)
        for n, delta in zip(stats, deltas):
            buffers[n].copy_(before[n].double() + delta)


def _counter_of(name: str) -> Optional[str]:
    """The step counter beside BN statistic ``name`` (None for a buffer
    that is no BN statistic)."""
    for stat in BN_STATS:
        if name.endswith(stat):
            return name[: -len(stat)] + BN_COUNTER
    return None
