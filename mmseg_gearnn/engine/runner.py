from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from ..utils.console import console_is_verbose, quiet_logger
from .hooks import ConsoleProgressHook


@RUNNERS.register_module()
class ConsoleRunner(Runner):
    """mmengine's ``Runner`` with a console for people.

    Its logger writes everything to the log file in the work dir as usual
    (the environment, the config, the hook table, every logging interval;
    the config is dumped there too), while the console shows WARNING and
    above and a :class:`~mmseg_gearnn.engine.hooks.ConsoleProgressHook`
    bar. Inside ``quiet_console(verbose=True)``
    (:func:`mmseg_gearnn.utils.console.quiet_console`) it is a plain
    ``Runner``. Configs select it with ``runner_type = 'ConsoleRunner'``.
    """

    def build_logger(self, *args, **kwargs):
        # Built in ``__init__`` before the environment and the config are
        # logged: quieting it here keeps them off the console.
        logger = super().build_logger(*args, **kwargs)
        quiet_logger(logger)
        return logger

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        super().register_hooks(default_hooks, custom_hooks)
        has_bar = any(isinstance(h, ConsoleProgressHook) for h in self.hooks)
        if not console_is_verbose() and not has_bar:
            self.register_hook(ConsoleProgressHook())
