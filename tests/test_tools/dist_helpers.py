"""Components that tests/test_tools/test_distributed.py loads into its
``tools/train.py`` runs (``custom_imports``, with this folder on
``PYTHONPATH``)."""

import os.path as osp

import torch
from mmcv.transforms import BaseTransform
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS, TRANSFORMS

from mmseg_gearnn.distortions import FixedDistortion, build_space


@TRANSFORMS.register_module()
class GearByIndexDistortion(BaseTransform):
    """Distorts dataset item ``i`` with gear ``1 + i % 2 + 2 * (i // 4 % 2)``
    of the space: no randomness, so that a distributed run and a single
    process see the same images, and items ``i`` and ``i + 2`` (one rank's
    batch of two) share a gear."""

    def __init__(self, space) -> None:
        self.space = build_space(space)

    def transform(self, results: dict) -> dict:
        i = results['sample_idx']
        gear = 1 + i % 2 + 2 * (i // 4 % 2)
        dtype, level = self.space.level_of(gear)
        return FixedDistortion(self.space, dtype, level).transform(results)


@HOOKS.register_module()
class SaveRankStateHook(Hook):
    """After training, every rank writes its model's full state (base and
    gears) to ``work_dir/state_rank{rank}.pth``."""

    def after_train(self, runner) -> None:
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(
            state, osp.join(runner.work_dir, f'state_rank{runner.rank}.pth')
        )
