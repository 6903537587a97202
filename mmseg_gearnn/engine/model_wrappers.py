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

_COUNTER = 'num_batches_tracked'


@MODEL_WRAPPERS.register_module()
class GearNNDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for gear training (any model works).

    - **CPU**: a model whose tensors are all on the CPU is wrapped without
      ``device_ids`` (the Runner passes ``[LOCAL_RANK]``, which DDP refuses
      for a CPU module), so ``torchrun --launcher pytorch`` trains on the
      ``gloo`` backend.
    - **Unused gears**: only the gears present in a rank's batch take part
      in its backward pass, so for a model with a ``gear_bank``
      ``find_unused_parameters`` defaults to True. DDP averages each
      gear's gradient over the ranks (zero where a rank did not use the
      gear) and leaves the gradient of a gear that no rank used unset; as
      the model weights each gear's loss by its share of the batch, this
      is the gradient of a single process on the union of the ranks'
      batches, and the optimiser skips unused gears as it does there.
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
            with a ``gear_bank``, else False.
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
        """``MMDistributedDataParallel.train_step``, then the gear bank's
        buffers merged over the ranks."""
        buffers = self._gear_buffers() if self.sync_gear_buffers else {}
        before = {n: b.detach().clone() for n, b in buffers.items()}
        log_vars = super().train_step(data, optim_wrapper)
        if buffers:
            self._merge_buffers(buffers, before)
        return log_vars

    def _gear_buffers(self) -> Dict[str, Tensor]:
        bank = getattr(self.module, 'gear_bank', None)
        if bank is None:
            return {}
        return dict(bank.named_buffers())

    @torch.no_grad()
    def _merge_buffers(
        self, buffers: Dict[str, Tensor], before: Dict[str, Tensor]
    ) -> None:
        counters = [n for n in buffers if n.endswith(_COUNTER)]
        stats = [n for n in buffers if not n.endswith(_COUNTER)]
        # Per tensor: this rank's update, and whether this rank made it
        # (the tensor or its BN layer's counter moved).
        # Tensors only (no host sync per buffer).
        deltas, made = [], []
        for n in stats:
            new, old = buffers[n].double(), before[n].double()
            deltas.append((new - old).reshape(-1))
            moved = (new != old).any()
            counter = n[: n.rfind('running_')] + _COUNTER
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
        sizes = [d.numel() for d in deltas]
        flat = torch.cat(deltas + made)
        torch_dist.all_reduce(
            flat, torch_dist.ReduceOp.SUM, self.process_group
        )
        *summed, counts = flat.split(sizes + [len(stats)])
        for n, delta, count in zip(stats, summed, counts):
            value = before[n].double() + (delta / count.clamp(min=1)).view(
                before[n].shape
            )
            buffers[n].copy_(value)
