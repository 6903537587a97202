"""The gear state of a :class:`GearNNSegmentor`: which adaptor its gears
hold, the gears file, and checkpoints read or loaded with a gear live."""

import logging
from typing import List, Optional, Sequence, Union

import torch
from mmengine.logging import print_log
from torch import Tensor

from ...distortions.space import (
    decode_gear_table,
    encode_gear_table,
    format_gears,
)
from ..adaptor import (
    budget_request,
    check_selected_in_one_process,
    resolve_adaptor,
)
from ..adaptor_tensors import adaptor_size_text, expand_bn_stats
from ..gear_bank import GearBank, adaptor_names_in
from ..gear_file import read_gears_file, write_gears_file

# Where torch keeps a module's get_extra_state() in its state dict.
_EXTRA_STATE = '_extra_state'


class GearStateMixin:
    """The state of a segmentor with a ``gear_bank`` over ``segmentor``
    (a mixin before :class:`SegmentorWrapper`):

    - **Adaptor**: the gear bank holds the adaptor's tensors. An adaptor by
      budget is pending (the gears hold nothing) until :meth:`set_adaptor`
      gives it its names: after ``AdaptorSelectionHook`` selected them, or
      from a checkpoint of this model (:meth:`adaptor_from_checkpoint`).
    - **Gears file**: :meth:`save_gears` and :meth:`load_gears`
      (:mod:`..gear_file`), bound to the sha256 of the base weights.
    - **Checkpoints**: :attr:`base_loaded` records that a checkpoint
      filled the base; a state-dict read restores the base's own tensors;
      a bare base checkpoint starts every gear from the base; a checkpoint
      missing a base or gear tensor is refused.
    """

    def _init_gear_state(
        self,
        adaptor: Union[str, Sequence[str], dict],
        gears_file: Optional[str],
        allow_other_base: bool,
        allow_random_base: bool = False,
    ) -> None:
        """Builds the gear bank for ``adaptor`` and registers the
        checkpoint hooks; ``__init__`` calls it once ``segmentor`` and
        ``space`` exist."""
        #: An adaptor by budget (see :func:`~..adaptor.budget_request`).
        self.adaptor_request: Optional[dict] = None
        #: Whether a checkpoint has filled the base's tensors.
        self.base_loaded = False
        #: Train gears on a base no checkpoint filled (tests only).
        self.allow_random_base = allow_random_base
        # What the load in progress holds: 'bare' (a base without gears),
        # 'gears' (this model's gears too) or None (no base).
        self._loading: Optional[str] = None
        self._bare_mapped = False
        if isinstance(adaptor, dict):
            self.adaptor_request = budget_request(adaptor)
            check_selected_in_one_process()
            names, self.selection_meta = [], {}
        else:
            names, self.selection_meta = resolve_adaptor(
                self.segmentor, adaptor, self.space
            )
        self._build_gear_bank(names)
        self.gears_file = gears_file
        #: Whether ``gears_file`` is still to be loaded: once a checkpoint
        #: has filled the base (or at the first forward call), never onto
        #: a base that is not filled yet.
        self.gears_file_pending = gears_file is not None
        self.allow_other_base = allow_other_base
        #: The file the base weights were loaded from, where a loader says
        #: so: recorded in saved gears files, named in load_gears errors.
        self.base_checkpoint: Optional[str] = None
        self._register_load_state_dict_pre_hook(self._before_load)
        self.register_load_state_dict_post_hook(self._check_loaded)
        self.register_load_state_dict_post_hook(self._after_load)
        # A hook, not a state_dict() override: mmengine's get_state_dict
        # (every Runner checkpoint, e.g. the best one, saved after
        # validation with a gear switched in) calls only hooks. The
        # entries share their storage with the tensors, so restoring after
        # the read puts the base's own values in them. (The bare
        # segmentor's state stays what it computes with: a gear exports
        # as a plain segmentor that way.)
        self._register_state_dict_hook(self._after_state_read)

    # -- the adaptor -------------------------------------------------------
    def _build_gear_bank(self, names: Sequence[str]) -> None:
        old = self._modules.get('gear_bank')
        if old is not None:
            old.remove_hooks()
        names = expand_bn_stats(self.segmentor, names)
        self.gear_bank = GearBank(self.segmentor, names, self.space.num_gears)

    def set_adaptor(self, adaptor: Union[str, Sequence[str]]) -> None:
        """Gives every gear the tensors of ``adaptor`` (a selection file or
        names), each starting from the base: how an adaptor by budget
        receives its selection. Only while :attr:`adaptor_pending`: gears
        that hold an adaptor are never discarded."""
        if not self.adaptor_pending:
            raise RuntimeError(
                'the gears already hold an adaptor; build the model with '
                'another adaptor instead'
            )
        names, self.selection_meta = resolve_adaptor(
            self.segmentor, adaptor, self.space
        )
        self._build_gear_bank(names)
        self.train(self.training)

    @property
    def adaptor_pending(self) -> bool:
        """An adaptor by budget not selected yet: the gears hold nothing."""
        return self.adaptor_request is not None and not self.gear_bank.names

    def adaptor_from_checkpoint(self, state_dict: dict, prefix='') -> bool:
        """Takes the adaptor of a checkpoint of this model (the names its
        gears hold) where it differs from the model's, so that testing or
        resuming a run uses the adaptor it was trained with: a pending
        adaptor by budget receives it; another adaptor (a config naming
        another selection) is replaced, with a warning naming both.
        Returns whether the adaptor changed."""
        names = adaptor_names_in(state_dict, f'{prefix}gear_bank.')
        if not names or set(names) == set(self.gear_bank.names):
            return False
        if self.adaptor_pending:
            self.set_adaptor(names)
            return True
        print_log(
            f"the checkpoint's gears hold {adaptor_size_text(names)}, "
            'not the adaptor this model was built with ('
            f'{adaptor_size_text(self.gear_bank.names)}, '
            f'{self.selection_meta.get("file") or "from the config"}): '
            "the checkpoint's adaptor is used (its gears were trained with "
            'it)',
            logger='current',
            level=logging.WARNING,
        )
        self.selection_meta = {}
        self._build_gear_bank(names)
        self.train(self.training)
        return True

    @property
    def adaptor_names(self) -> List[str]:
        return list(self.gear_bank.names)

    def adaptor_fraction(self) -> float:
        """One gear's adaptor bytes over the base model's bytes."""
        total = sum(
            t.numel() * t.element_size()
            for t in self.segmentor.state_dict().values()
        )
        return self.gear_bank.adaptor_bytes() / total

    def trainable_gear_parameters(self, gear: int) -> List[Tensor]:
        """The gear's adaptor parameters (not its BN buffers)."""
        tensors = self.gear_bank.tensors(gear).values()
        return [t for t in tensors if isinstance(t, torch.nn.Parameter)]

    def check_base_loaded(self) -> None:
        """Raises unless a checkpoint has filled the base (or
        :attr:`allow_random_base`): gears trained on a random base adapt
        nothing that will be used. A run calls it before the gears train
        (``AdaptorSelectionHook``), whatever the adaptor."""
        if self.base_loaded or self.allow_random_base:
            return
        raise RuntimeError(
            'no checkpoint has filled the base model: its gears would '
            'adapt random weights. Set load_from to the base checkpoint '
            '(e.g. --cfg-options load_from=BASE.pth; mmseg releases '
            'trained ones) or train the base first with its base config '
            '(for tests only: model.allow_random_base=True)'
        )

    def check_selection_base(self) -> bool:
        """Logs a warning naming both hashes when the selection file of the
        adaptor records the sha256 of other base weights than the base's
        now (the adaptor was chosen on another base); returns whether they
        agree (True when the file records none)."""
        theirs = self.selection_meta.get('base_sha256')
        if theirs is None:
            return True
        ours = self.gear_bank.base_sha256()
        if theirs == ours:
            return True
        print_log(
            f'the adaptor selection {self.selection_meta.get("file")} was '
            'scored on other base weights than the ones its gears train '
            f'on:\n  selection scored on base sha256 {theirs} (file: '
            f'{self.selection_meta.get("checkpoint") or "not recorded"})\n'
            f'  this base sha256 {ours} (file: '
            f'{self.base_checkpoint or "unknown"})\nThe tensors it chose may '
            'not be the ones that matter for this base: select again on it.',
            logger='current',
            level=logging.WARNING,
        )
        return False

    # -- the gears file ----------------------------------------------------
    def save_gears(self, path: str) -> None:
        """Writes the adaptors of every gear (no base tensors) and the
        sha256 of the base weights they belong to."""
        self.gear_bank.restore()
        meta = dict(self._gears_meta(), base_checkpoint=self.base_checkpoint)
        write_gears_file(
            self.gear_bank, path, meta=meta, table=self.space.gear_table()
        )

    def load_gears(
        self,
        path: str,
        allow_other_base: Optional[bool] = None,
        base_checkpoint: Optional[str] = None,
    ) -> None:
        """Loads a gears file made for this base, selection and gear table.

        Args:
            path (str): the gears file.
            allow_other_base (bool, optional): accept gears trained on other
                base weights (see the class's ``allow_other_base``, the
                default).
            base_checkpoint (str, optional): the file this model's base
                weights came from, for the error message;
                :attr:`base_checkpoint` if None.

        Raises:
            ValueError: the file does not match this model (architecture,
                adaptor, gear table), or its gears were trained on other
                base weights and ``allow_other_base`` is False.
        """
        self.gear_bank.restore()
        read_gears_file(
            self.gear_bank,
            path,
            allow_other_base=(
                self.allow_other_base
                if allow_other_base is None
                else allow_other_base
            ),
            base_checkpoint=base_checkpoint or self.base_checkpoint,
            space=self.space,
        )
        self.gears_file_pending = False

    def load_pending_gears_file(self) -> None:
        """Loads ``gears_file`` if it is still pending (see
        :attr:`gears_file_pending`)."""
        if self.gears_file_pending:
            with self.gear_bank.lock:
                if self.gears_file_pending:
                    self.load_gears(self.gears_file)

    def _gears_meta(self) -> dict:
        return dict(space=self.space.to_dict())

    # -- the gear table in checkpoints ---------------------------------------
    def get_extra_state(self) -> Tensor:
        """Saved in every state dict (``_extra_state``): the gear table
        (:func:`~mmseg_gearnn.distortions.space.encode_gear_table`, a
        tensor like every other value), so that a load maps gears by
        (type, level), not by position."""
        return encode_gear_table(self.space.gear_table())

    def set_extra_state(self, state) -> None:
        # _map_gear_table (a load pre-hook) has put the gears in this
        # model's order and this model's table here.
        pass

    def _map_gear_table(self, state_dict: dict, prefix: str) -> None:
        """Renumbers the gears of a checkpoint into this model's gear
        table by (type, level): a config whose types are listed in another
        order (a dumped config sorts them) loads the same gears. Refuses a
        checkpoint whose table lacks a gear of this model, naming both."""
        key = f'{prefix}{_EXTRA_STATE}'
        gears = f'{prefix}gear_bank.gears.'
        try:
            table = decode_gear_table(state_dict.get(key))
        except ValueError as err:
            raise ValueError(f"the checkpoint's {key}: {err}") from None
        state_dict[key] = self.get_extra_state()
        if table is None:
            if self._loading == 'gears':
                print_log(
                    'the checkpoint records no gear table (saved before '
                    'checkpoints recorded it): its gears are taken by '
                    f'position, as this model numbers them: '
                    f'{format_gears(self.space.gear_table())}',
                    logger='current',
                    level=logging.WARNING,
                )
            return
        try:
            mapping = self.space.gear_map(table)
        except ValueError as err:
            raise ValueError(
                f'the checkpoint does not hold the gears of this model: {err}'
            ) from None
        if all(ours == theirs for ours, theirs in mapping.items()) and len(
            table
        ) == len(mapping):
            return
        held = {
            k: state_dict.pop(k)
            for k in list(state_dict)
            if k.startswith(gears)
        }
        for ours, theirs in mapping.items():
            head = f'{gears}{theirs}.'
            for k, v in held.items():
                if k.startswith(head):
                    state_dict[f'{gears}{ours}.{k[len(head) :]}'] = v
        unused = ' '.join(
            f'{i}:{t}@{lv}'
            for i, (t, lv) in enumerate(table)
            if i not in mapping.values()
        )
        print_log(
            "the checkpoint's gears are mapped by (type, level) onto this "
            f"model's gear table:\n  checkpoint: {format_gears(table)}\n"
            f'  model:      {format_gears(self.space.gear_table())}'
            + (
                f'\n  not in this model (not loaded): {unused}'
                if unused
                else ''
            ),
            logger='current',
        )

    # -- checkpoint hooks --------------------------------------------------
    def _before_load(self, state_dict: dict, prefix: str, *args) -> None:
        # After SegmentorWrapper's hook: a bare base is under segmentor.
        bare, self._bare_mapped = self._bare_mapped, False
        self._loading = None
        if any(k.startswith(f'{prefix}segmentor.') for k in state_dict):
            self.base_loaded = True
            self._loading = 'bare' if bare else 'gears'
        self._map_gear_table(state_dict, prefix)
        self.adaptor_from_checkpoint(state_dict, prefix)

    def _after_load(self, module, incompatible_keys) -> None:
        """Loads a pending ``gears_file`` once a bare base checkpoint has
        filled the base; a checkpoint of this model holds its own gears,
        which are kept (with a warning naming the file not loaded)."""
        loading, self._loading = self._loading, None
        if not self.gears_file_pending or loading is None:
            return
        if loading == 'bare':
            self.load_gears(self.gears_file)
            return
        self.gears_file_pending = False
        print_log(
            f'gears_file {self.gears_file} not loaded: the checkpoint '
            'holds gears of this model, which are kept (load a base '
            'checkpoint to use the gears file)',
            logger='current',
            level=logging.WARNING,
        )

    def _after_state_read(self, *args) -> None:
        self.gear_bank.restore()

    def _after_bare_checkpoint(self, state_dict, prefix) -> None:
        """A base checkpoint has no gears: every gear starts from the base."""
        self._bare_mapped = True
        self.gear_bank.fill_from_base(
            state_dict, f'{prefix}segmentor.', f'{prefix}gear_bank.'
        )

    @staticmethod
    def _check_loaded(module, incompatible_keys) -> None:
        missing = [
            k
            for k in incompatible_keys.missing_keys
            if k.startswith('segmentor.') or k.startswith('gear_bank.')
        ]
        if missing:
            raise RuntimeError(
                f'the checkpoint does not match this GearNNSegmentor: '
                f'{len(missing)} tensor(s) missing, e.g. {missing[:5]}'
            )
