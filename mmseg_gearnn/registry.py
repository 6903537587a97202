"""The ``mmseg_gearnn`` config scope.

An installed package ships its configs in ``mmseg_gearnn/.mim/configs``, so
that a user config may inherit them the way mim-installed OpenMMLab packages
are inherited::

    _base_ = ['mmseg_gearnn::gearnn/deeplabv3_cityscapes.py']

mmengine resolves such a path only for packages named in its
``MODULE2PACKAGE`` table, and builds every object of a config read that way
under the scope ``mmseg_gearnn``. This module adds the table entry and one
registry per mmseg registry under that scope. The plugin registers its
components in mmseg's registries; each registry here is an empty child of
mmseg's and finds them, and everything of mmseg and mmengine, through its
parents.

Config files are read before their ``custom_imports`` run, so the process
that reads such a user config imports ``mmseg_gearnn`` first (the project's
tools do).
"""

import mmseg.registry
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.registry import Registry

SCOPE = 'mmseg_gearnn'

# Module name -> distribution name, as mmengine's own entries.
MODULE2PACKAGE.setdefault(SCOPE, 'mmseg_gearnn')


def _scoped_child(parent: Registry) -> Registry:
    return Registry(parent.name, parent=parent, scope=SCOPE, locations=[SCOPE])


HOOKS = _scoped_child(mmseg.registry.HOOKS)
DATASETS = _scoped_child(mmseg.registry.DATASETS)
DATA_SAMPLERS = _scoped_child(mmseg.registry.DATA_SAMPLERS)
TRANSFORMS = _scoped_child(mmseg.registry.TRANSFORMS)
MODELS = _scoped_child(mmseg.registry.MODELS)
WEIGHT_INITIALIZERS = _scoped_child(mmseg.registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _scoped_child(mmseg.registry.OPTIMIZERS)
OPTIM_WRAPPER_CONSTRUCTORS = _scoped_child(
    mmseg.registry.OPTIM_WRAPPER_CONSTRUCTORS
)
TASK_UTILS = _scoped_child(mmseg.registry.TASK_UTILS)
PARAM_SCHEDULERS = _scoped_child(mmseg.registry.PARAM_SCHEDULERS)
METRICS = _scoped_child(mmseg.registry.METRICS)
MODEL_WRAPPERS = _scoped_child(mmseg.registry.MODEL_WRAPPERS)
VISBACKENDS = _scoped_child(mmseg.registry.VISBACKENDS)
VISUALIZERS = _scoped_child(mmseg.registry.VISUALIZERS)
RUNNERS = _scoped_child(mmseg.registry.RUNNERS)
RUNNER_CONSTRUCTORS = _scoped_child(mmseg.registry.RUNNER_CONSTRUCTORS)
LOOPS = _scoped_child(mmseg.registry.LOOPS)
EVALUATOR = _scoped_child(mmseg.registry.EVALUATOR)
LOG_PROCESSORS = _scoped_child(mmseg.registry.LOG_PROCESSORS)
OPTIM_WRAPPERS = _scoped_child(mmseg.registry.OPTIM_WRAPPERS)
INFERENCERS = _scoped_child(mmseg.registry.INFERENCERS)

__all__ = [
    'SCOPE',
    'HOOKS',
    'DATASETS',
    'DATA_SAMPLERS',
    'TRANSFORMS',
    'MODELS',
    'WEIGHT_INITIALIZERS',
    'OPTIMIZERS',
    'OPTIM_WRAPPER_CONSTRUCTORS',
    'TASK_UTILS',
    'PARAM_SCHEDULERS',
    'METRICS',
    'MODEL_WRAPPERS',
    'VISBACKENDS',
    'VISUALIZERS',
    'RUNNERS',
    'RUNNER_CONSTRUCTORS',
    'LOOPS',
    'EVALUATOR',
    'LOG_PROCESSORS',
    'OPTIM_WRAPPERS',
    'INFERENCERS',
]
