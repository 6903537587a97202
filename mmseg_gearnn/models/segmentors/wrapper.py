"""The part every segmentor wrapping another segmentor shares."""

import copy
from typing import Dict, List

import torch
from mmengine.config import ConfigDict
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptSampleList
from torch import Tensor


class SegmentorWrapper(BaseSegmentor):
    """Builds ``self.segmentor`` from a config, shares its data
    preprocessor, exposes what mmseg tools read from a segmentor, and
    accepts a checkpoint of the bare segmentor (its keys move under
    ``segmentor.``).

    Args:
        segmentor (dict): config of the wrapped mmseg segmentor.
        data_preprocessor (dict, optional): defaults to the segmentor's.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(
        self,
        segmentor: ConfigType,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptConfigType = None,
    ) -> None:
        # ConfigDict, not dict: mmseg reads test_cfg.mode by attribute.
        segmentor = ConfigDict(copy.deepcopy(segmentor))
        own_preprocessor = segmentor.pop('data_preprocessor', None)
        if data_preprocessor is None:
            data_preprocessor = own_preprocessor
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg
        )
        self.segmentor = MODELS.build(segmentor)
        self._register_load_state_dict_pre_hook(self._map_bare_checkpoint)

    def _map_bare_checkpoint(
        self, state_dict: Dict, prefix: str, *args
    ) -> None:
        """Moves the keys of a bare segmentor checkpoint (``load_from`` a
        base model) under ``segmentor.``; a no-op for the wrapper's own. A
        checkpoint of another wrapper (stability training), holding only
        ``segmentor.``, is a base too."""
        seg_prefix = prefix + 'segmentor.'
        if any(k.startswith(seg_prefix) for k in state_dict):
            if not self._holds_own_state(state_dict, prefix):
                self._after_bare_checkpoint(state_dict, prefix)
            return
        own = set(self.segmentor.state_dict())
        for key in list(state_dict):
            if key.startswith(prefix) and key[len(prefix) :] in own:
                state_dict[seg_prefix + key[len(prefix) :]] = state_dict.pop(
                    key
                )
        self._after_bare_checkpoint(state_dict, prefix)

    def _holds_own_state(self, state_dict: Dict, prefix: str) -> bool:
        """Whether ``state_dict`` has any of the wrapper's own tensors
        (those outside ``segmentor.``); True for a wrapper that has none."""
        own = [
            name
            for name, _ in (*self.named_parameters(), *self.named_buffers())
            if not name.startswith('segmentor.')
        ]
        return not own or any(prefix + name in state_dict for name in own)

    def _after_bare_checkpoint(self, state_dict: Dict, prefix: str) -> None:
        """Hook for subclasses: the mapped bare checkpoint, before loading."""

    # -- tensor paths: the wrapped segmentor's, unless a subclass adapts --
    def _forward(
        self, inputs: Tensor, data_samples: OptSampleList = None
    ) -> Tensor:
        return self.segmentor._forward(inputs, data_samples)

    def encode_decode(
        self, inputs: Tensor, batch_img_metas: List[dict]
    ) -> Tensor:
        return self.segmentor.encode_decode(inputs, batch_img_metas)

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        return self.segmentor.extract_feat(inputs)

    # -- what mmseg tools read from a segmentor ----------------------------
    @property
    def num_classes(self) -> int:
        return self.segmentor.num_classes

    @property
    def out_channels(self) -> int:
        return self.segmentor.out_channels

    @property
    def align_corners(self) -> bool:
        return self.segmentor.align_corners

    @property
    def decode_head(self):
        return self.segmentor.decode_head

    @property
    def with_auxiliary_head(self) -> bool:
        return self.segmentor.with_auxiliary_head

    @property
    def with_neck(self) -> bool:
        return self.segmentor.with_neck

    @property
    def ignore_index(self) -> int:
        """The ignore index of the decode head (the last of a cascade)."""
        head = self.segmentor.decode_head
        if isinstance(head, torch.nn.ModuleList):
            head = head[-1]
        return getattr(head, 'ignore_index', 255)
