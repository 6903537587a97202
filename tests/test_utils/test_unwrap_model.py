"""``unwrap_model``: the one way the hooks reach the model inside
``runner.model``'s data-parallel wrapper."""

from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from torch import nn
from toys import tiny_segmentor

import mmseg_gearnn  # noqa: F401
from mmseg_gearnn.engine.hooks import FrozenBaseGuardHook, GearCheckpointHook
from mmseg_gearnn.utils import unwrap_model


def test_the_wrapped_model_and_a_bare_one():
    model = nn.Conv2d(3, 3, 1)
    assert unwrap_model(nn.DataParallel(model)) is model
    assert unwrap_model(model) is model


def test_the_hooks_find_a_wrapped_gear_model():
    init_default_scope('mmseg')
    model = MODELS.build(
        dict(
            type='GearNNSegmentor',
            segmentor=tiny_segmentor(),
            space=dict(distortions=dict(jpeg=[10])),
            adaptor='bn',
        )
    )

    class Runner:
        pass

    Runner.model = nn.DataParallel(model)
    assert FrozenBaseGuardHook._base(Runner) == (model, model.segmentor)
    assert GearCheckpointHook._model(Runner) is model
