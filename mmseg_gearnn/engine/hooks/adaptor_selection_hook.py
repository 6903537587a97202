import copy
import os.path as osp
import random
from contextlib import contextmanager

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmseg.registry import HOOKS

from ...models.adaptor_tensors import adaptor_size_text
from ...utils.dist import unwrap_model


@HOOKS.register_module()
class AdaptorSelectionHook(Hook):
    """Prepares the adaptor of a gear run on its base checkpoint.

    - **A base, not random weights**: before training, a model whose base
      no checkpoint has filled (no ``load_from``) stops the run, whatever
      its adaptor: its gears would adapt a randomly initialised base
      (:meth:`GearNNSegmentor.check_base_loaded`; ``allow_random_base=True``
      on the model lets tests train on one). Every gear config has this
      hook (``gearnn_hooks``).
    - **An adaptor by budget** (``adaptor=dict(budget=0.002,
      method='fisher')``) is selected before the gears train, on the base
      that ``load_from`` loaded: :func:`mmseg_gearnn.selection.run_selection`
      scores it on batches of the config's ``train_dataloader``, distorted
      at each level of the gear table; the selection file is written to
      the work dir (``selection.json``) and every gear starts from the base
      with the selected tensors. The optimizer and parameter schedulers,
      built before the gears had tensors, are built again from the config.
      The process-wide random generators are left as they were: the
      selection draws nothing from the training's random streams.
    - **Testing or resuming** a run, or starting from a checkpoint of a
      gear model: the adaptor is the one its checkpoint holds, where it
      differs from the config's (an adaptor by budget, or another
      selection; :meth:`GearNNSegmentor.adaptor_from_checkpoint`); in
      training the optimizer is built again for the new tensors before
      its state is loaded.

    Args:
        filename (str): the selection file, in the work dir.
        require_base (bool): stop a run whose base no checkpoint filled.
    """

    priority = 'VERY_HIGH'  # before any hook reads the gears

    def __init__(
        self, filename: str = 'selection.json', require_base: bool = True
    ) -> None:
        self.filename = filename
        self.require_base = require_base

    @staticmethod
    def _model(runner):
        model = unwrap_model(runner.model)
        return model if hasattr(model, 'adaptor_pending') else None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = self._model(runner)
        state = checkpoint.get('state_dict', checkpoint)
        if model is None or not model.adaptor_from_checkpoint(state):
            return
        runner.logger.info(
            'adaptor taken from the checkpoint: '
            + adaptor_size_text(model.adaptor_names, model.adaptor_fraction())
        )
        if isinstance(runner.optim_wrapper, OptimWrapper):  # training
            self._rebuild_optimizer(runner)

    def before_train(self, runner) -> None:
        model = self._model(runner)
        if model is None:
            return
        if self.require_base:
            model.check_base_loaded()
        if not model.adaptor_pending:
            return
        path = osp.join(runner.work_dir, self.filename)
        with _random_state_kept():
            self._select(runner, model, path)
        model.set_adaptor(path)
        runner.logger.info(
            f'adaptor selected to {path}: '
            + adaptor_size_text(model.adaptor_names, model.adaptor_fraction())
        )
        self._rebuild_optimizer(runner)
        runner.optim_wrapper.initialize_count_status(
            runner.model, runner.iter, runner.max_iters
        )

    @staticmethod
    def _select(runner, model, path: str) -> None:
        """Scores the loaded base on distorted training batches and writes
        the selection file."""
        from ...selection import (
            DataloaderBatchSource,
            check_budget_request,
            run_selection,
        )

        options = check_budget_request(model.adaptor_request)
        budget, method = options.pop('budget'), options.pop('method')
        if 'train_dataloader' not in runner.cfg:
            raise RuntimeError(
                'an adaptor by budget is selected on batches of the '
                "config's train_dataloader, and the config has none"
            )
        # The base as a plain segmentor with the model's data preprocessor
        # (the scorers copy it and never write it).
        base = copy.deepcopy(model.segmentor)
        base.data_preprocessor = copy.deepcopy(model.data_preprocessor)
        load_from = runner.cfg.get('load_from')
        source = DataloaderBatchSource(
            runner.cfg.train_dataloader,
            model.space,
            seed=options.get('seed', 0),
        )
        runner.logger.info(
            f'selecting the adaptor: {method!r} scores under a budget of '
            f'{budget} of the model'
        )
        run_selection(
            base,
            model.space,
            method,
            budget=budget,
            source=source,
            checkpoint=load_from if osp.isfile(str(load_from)) else None,
            config=runner.cfg.filename,
            out=path,
            **options,
        )

    @staticmethod
    def _rebuild_optimizer(runner) -> None:
        """The optimizer and schedulers of the config, built again for the
        gears' new tensors."""
        if runner.cfg.get('optim_wrapper') is None:
            raise RuntimeError(
                'the gears received their adaptor after the optimizer was '
                'built, and the config has no optim_wrapper to build it again'
            )
        # As Runner.train does: optimizer, lr scaling, then schedulers.
        runner.optim_wrapper = runner.build_optim_wrapper(
            copy.deepcopy(runner.cfg.optim_wrapper)
        )
        schedulers = copy.deepcopy(runner.cfg.get('param_scheduler'))
        runner.param_schedulers = schedulers
        runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
        if schedulers is not None:
            runner.param_schedulers = runner.build_param_scheduler(schedulers)


@contextmanager
def _random_state_kept():
    """Restores every process-wide random generator on exit (the selection
    seeds them)."""
    states = np.random.get_state(), random.getstate()
    devices = (
        list(range(torch.cuda.device_count()))
        if torch.cuda.is_initialized()
        else []
    )
    with torch.random.fork_rng(devices=devices):
        yield
    np.random.set_state(states[0])
    random.setstate(states[1])
