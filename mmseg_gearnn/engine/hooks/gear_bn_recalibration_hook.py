"""Re-estimation of every gear's BN running statistics, and its hook."""

from collections import defaultdict
from typing import Dict, Iterable, Optional

import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmseg.registry import HOOKS

from ...models.adaptor_tensors import BN_COUNTER, BN_STATS, bn_modules
from ...models.gear_bank import GearBank
from ...utils.dist import mean_over_ranks, unwrap_model


@torch.no_grad()
def recalibrate_bn(
    model, data_batches: Iterable[dict], batches_per_gear: int = 4
) -> Dict[int, int]:
    """Re-estimates each gear's BN running statistics under its final
    tensors.

    During gear training an adapted BN layer normalises with batch
    statistics while its running statistics move by ``momentum`` per
    batch of its gear: a gear that saw a few batches keeps mostly the
    clean base's statistics, and inference (which uses them) no longer
    matches training. This pass replaces them with the plain average over
    ``batches_per_gear`` batches of each gear (BN with ``momentum=None``),
    nothing else changes. In a distributed run each rank averages its own
    batches, then every gear's statistics are averaged over the ranks
    weighted by their batch counts (:func:`merge_bn_stats_over_ranks`):
    every rank holds what one process gets on the union of the ranks'
    batches.

    Args:
        model (GearNNSegmentor): the model, not wrapped.
        data_batches (Iterable[dict]): training batches (as the
            dataloader yields them) with distortion metadata; consumed
            until every distorted gear has ``batches_per_gear`` groups of
            two or more samples, or the iterable ends.
        batches_per_gear (int): groups averaged per gear.

    Returns:
        dict: groups used per gear (over every rank); a gear missing from
        it kept its statistics.
    """
    if batches_per_gear < 1:
        raise ValueError(
            f'batches_per_gear must be >= 1, got {batches_per_gear}'
        )
    bank = model.gear_bank
    if not bank.adapted_bn:
        return {}
    modules = {
        n: m
        for n, m in bn_modules(model.segmentor).items()
        if n in bank.adapted_bn
    }
    momenta = {n: m.momentum for n, m in modules.items()}
    wanted = set(range(1, bank.num_gears))
    seen: Dict[int, int] = defaultdict(int)
    was_training = model.training
    model.train()
    try:
        for m in modules.values():
            m.momentum = None  # cumulative average
        for batch in data_batches:
            data = model.data_preprocessor(batch, True)
            for gear, idx, sub_inputs, sub_samples in model.groups(
                data['inputs'], data['data_samples']
            ):
                if gear not in wanted or len(idx) < 2:
                    continue
                if gear not in seen:
                    # Restart the average for this gear.
                    for t in bank.bn_buffers(gear, (BN_COUNTER,)):
                        t.zero_()
                model.call_route(gear, '_forward', sub_inputs, sub_samples)
                seen[gear] += 1
                if seen[gear] >= batches_per_gear:
                    wanted.discard(gear)
            if not wanted:
                break
    finally:
        for n, m in modules.items():
            m.momentum = momenta[n]
        model.train(was_training)
    if get_world_size() > 1:
        seen = merge_bn_stats_over_ranks(bank, seen)
    return dict(sorted(seen.items()))


@torch.no_grad()
def merge_bn_stats_over_ranks(
    bank: GearBank, seen: Dict[int, int]
) -> Dict[int, int]:
    """Each gear's adapted BN statistics averaged over the ranks, weighted
    by the batches each rank averaged (``seen``; those of a rank without
    batches of the gear count for nothing); returns the batches per gear
    over every rank."""
    gears = range(1, bank.num_gears)
    stats = [(g, t) for g in gears for t in bank.bn_buffers(g, BN_STATS)]
    if not stats:
        return seen
    weights = torch.tensor(
        [float(seen.get(g, 0)) for g, _ in stats],
        dtype=torch.float64,
        device=stats[0][1].device,
    )
    totals = mean_over_ranks([t for _, t in stats], weights).tolist()
    per_gear: Dict[int, float] = {}
    for (gear, _), total in zip(stats, totals):
        per_gear.setdefault(gear, total)
    for gear in gears:
        if per_gear[gear] > 0:
            for t in bank.bn_buffers(gear, (BN_COUNTER,)):
                t.fill_(int(per_gear[gear]))
    return {g: int(per_gear[g]) for g in gears if per_gear[g] > 0}


@HOOKS.register_module()
class GearBNRecalibrationHook(Hook):
    """Re-estimates every gear's BN running statistics after the last
    training iteration, before the final checkpoint and validation.

    A gear trained on a few batches leaves its running statistics mostly
    at the clean base's (they move by the BN momentum per batch), while
    training normalised with the distorted batches' own statistics; see
    :func:`recalibrate_bn`. Models without adapted BN layers are left
    alone.

    Args:
        batches_per_gear (int): training batches averaged per gear.
            Default: 4.
        max_batches (int, optional): stop after this many batches even if
            some gear got fewer (it is logged). Default: 10 batches per
            gear.
    """

    # Before GearCheckpointHook (LOW) and CheckpointHook (VERY_LOW).
    priority = 'NORMAL'

    def __init__(
        self, batches_per_gear: int = 4, max_batches: Optional[int] = None
    ) -> None:
        if batches_per_gear < 1:
            raise ValueError(
                f'batches_per_gear must be >= 1, got {batches_per_gear}'
            )
        if max_batches is not None and max_batches < 1:
            raise ValueError(f'max_batches must be >= 1, got {max_batches}')
        self.batches_per_gear = batches_per_gear
        self.max_batches = max_batches

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        if not self.is_last_train_iter(runner):
            return
        model = unwrap_model(runner.model)
        bank = getattr(model, 'gear_bank', None)
        if bank is None or not bank.adapted_bn:
            return
        num_gears = bank.num_gears - 1
        limit = self.max_batches or 10 * self.batches_per_gear * num_gears
        # The training loop's own iterator: mmengine's InfiniteSampler
        # cannot be iterated afresh once an iterator was dropped.
        batches = getattr(runner.train_loop, 'dataloader_iterator', None)
        if batches is None:
            batches = iter(runner.train_dataloader)
        seen = recalibrate_bn(
            model,
            (b for _, b in zip(range(limit), batches)),
            self.batches_per_gear,
        )
        short = [
            g
            for g in range(1, num_gears + 1)
            if seen.get(g, 0) < self.batches_per_gear
        ]
        print_log(
            f'BN statistics of {len(seen)} gear(s) re-estimated on '
            f'{self.batches_per_gear} batch(es) each'
            + (
                f'; gear(s) {short} got fewer (they keep what they have)'
                if short
                else ''
            ),
            logger='current',
        )
