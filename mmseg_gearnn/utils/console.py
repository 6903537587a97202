"""A console for people: one line per stage, a progress bar, the results.

mmengine logs everything it knows at INFO (the environment, the whole
config, the hook table, every logging interval) to its log file and to the
console alike. Inside :func:`quiet_console` the console keeps only
WARNING and above from mmengine's loggers; their files keep everything.
What people should see is shown by :func:`say` (also logged) and
:func:`echo` (console only), progress by :class:`ProgressBar`.

Warnings from third-party packages (mmengine's and mmseg's deprecations,
``pkg_resources``, ...; logged or raised with :mod:`warnings`) go to the
quiet console's log file, not to the console; the project's own warnings
and every error still show, each warning once.

One line makes a script quiet; ``--verbose`` gives mmengine's console
back::

    with quiet_console(verbose=args.verbose):
        main()

Runners show their progress and keep their logger quiet when built as
:class:`~mmseg_gearnn.engine.ConsoleRunner` (``runner_type`` in a config;
the pipeline of :mod:`mmseg_gearnn.apis` always does).
"""

import functools
import logging
import os.path as osp
import sys
import sysconfig
import time
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, List, Optional, Set, TextIO, Tuple

import mmengine.logging
from mmengine.dist import is_main_process
from mmengine.logging import MMLogger, print_log
from mmengine.logging.logger import FilterDuplicateWarning, MMFormatter
from mmengine.utils import mkdir_or_exist
from tqdm import tqdm

# The file, in a work dir, that keeps a run's third-party warnings.
WARNINGS_LOG = 'warnings.log'

# Quiet unless a surrounding ``quiet_console(verbose=True)`` says otherwise.
_VERBOSE: ContextVar[bool] = ContextVar(
    'gearnn_console_verbose', default=False
)


class _Quiet:
    """What the innermost quiet :func:`quiet_console` undoes on exit, and
    the warnings already shown (shared with the contexts it nests in)."""

    def __init__(self, outer: Optional['_Quiet']) -> None:
        # (handler, its level, its formatter) before this context.
        self.restore: List[
            Tuple[logging.Handler, int, Optional[logging.Formatter]]
        ] = []
        # mmengine's filter, shared by every quieted console: a logger
        # warning repeated by each new runner shows once.
        self.logged = (
            FilterDuplicateWarning('gearnn_console')
            if outer is None
            else outer.logged
        )
        self.warned: Set[tuple] = set() if outer is None else outer.warned
        self.notices = _Notices() if outer is None else outer.notices
        self.third_party = _ThirdPartyWarnings(self.notices)
        # Files opened by keep_warnings_in, closed with this context.
        self.kept = 0


class _Notices:
    """Third-party warnings on their way to the innermost open log (held
    until one opens), each written once."""

    def __init__(self) -> None:
        self.streams: List[TextIO] = []
        self.pending: List[str] = []
        self.written: Set[str] = set()

    def note(self, key: str, text: str) -> None:
        if key in self.written:
            return
        self.written.add(key)
        if self.streams:
            self.streams[-1].write(text)
            self.streams[-1].flush()
        else:
            self.pending.append(text)

    def push(self, stream: TextIO) -> None:
        self.streams.append(stream)
        stream.write(''.join(self.pending))
        stream.flush()
        self.pending.clear()

    def pop(self) -> None:
        self.streams.pop().close()


def _real_dir(path: str) -> str:
    return osp.join(osp.realpath(path), '')


_PACKAGE = _real_dir(osp.dirname(osp.dirname(osp.abspath(__file__))))
_INSTALLED = tuple(
    {
        _real_dir(path)
        for key in ('stdlib', 'platstdlib', 'purelib', 'platlib')
        for path in [sysconfig.get_paths().get(key)]
        if path
    }
)
# Frames of the logging machinery, skipped to find who logged a record.
_LOGGING_DIRS = tuple(
    _real_dir(osp.dirname(module.__file__))
    for module in (logging, mmengine.logging)
)


def is_third_party(filename: str) -> bool:
    """Whether ``filename`` belongs to an installed package or the standard
    library (not to this package, nor to a script or a benchmark)."""
    if filename.startswith('<frozen '):  # <frozen importlib._bootstrap>
        return True
    path = osp.realpath(filename)
    if path.startswith(_PACKAGE):
        return False
    return path.startswith(_INSTALLED)


def _logged_from() -> str:
    """The file of the code that logged the record being handled."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        path = osp.realpath(filename)
        if not (
            path == osp.realpath(__file__) or path.startswith(_LOGGING_DIRS)
        ):
            return filename
        frame = frame.f_back
    return '<unknown>'


class _ThirdPartyWarnings(logging.Filter):
    """On a console handler: a WARNING logged by a third-party package goes
    to the quiet console's log instead."""

    def __init__(self, notices: _Notices) -> None:
        super().__init__('gearnn_third_party')
        self.notices = notices

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        origin = _logged_from()
        if not is_third_party(origin):
            return True
        stamp = time.strftime('%Y/%m/%d %H:%M:%S')
        self.notices.note(
            record.getMessage(),
            f'{stamp} - {record.name} - WARNING - {record.getMessage()} '
            f'(logged from {origin})\n',
        )
        return False


class _PlainInfo(logging.Formatter):
    """INFO as the bare message; other levels as ``formatter`` has them."""

    def __init__(self, formatter: Optional[logging.Formatter]) -> None:
        super().__init__()
        self.formatter = formatter or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO:
            return record.getMessage()
        return self.formatter.format(record)


_QUIET: ContextVar[Optional[_Quiet]] = ContextVar(
    'gearnn_console_quiet', default=None
)


def console_is_verbose() -> bool:
    """Whether the console shows mmengine's full output."""
    return _VERBOSE.get()


def _console_handlers(logger: logging.Logger) -> List[logging.Handler]:
    # A FileHandler is a StreamHandler too: only the others are consoles.
    return [
        h
        for h in logger.handlers
        if isinstance(h, logging.StreamHandler)
        and not isinstance(h, logging.FileHandler)
    ]


def quiet_logger(logger: logging.Logger, plain_info: bool = False) -> None:
    """Lets ``logger``'s console show WARNING and above only, each warning
    once (its files keep every message); undone when the surrounding
    :func:`quiet_console` ends. Nothing changes on a verbose console.

    Args:
        logger (logging.Logger): an MMLogger.
        plain_info (bool): show INFO too, as the bare message (for a
            logger whose INFO is meant for people).
    """
    if console_is_verbose():
        return
    quiet = _QUIET.get()
    for handler in _console_handlers(logger):
        if handler.level >= logging.WARNING:
            continue
        if quiet is not None:
            quiet.restore.append((handler, handler.level, handler.formatter))
            handler.addFilter(quiet.third_party)
            handler.addFilter(quiet.logged)
        if plain_info:
            handler.setFormatter(_PlainInfo(handler.formatter))
        else:
            handler.setLevel(logging.WARNING)


def _show_once(quiet: _Quiet, show: Callable) -> Callable:
    """``warnings.showwarning`` that shows a warning once (mmengine resets
    Python's once-per-place registry whenever it touches the filters, so
    each stage would show the same deprecations again), a third-party one
    in the log instead of on the console."""

    def show_once(message, category, filename, lineno, file=None, line=None):
        if is_third_party(filename):
            quiet.notices.note(
                str((str(message), category, filename, lineno)),
                warnings.formatwarning(
                    message, category, filename, lineno, line
                ),
            )
            return
        key = (str(message), category, filename, lineno)
        if key not in quiet.warned:
            quiet.warned.add(key)
            show(message, category, filename, lineno, file, line)

    return show_once


@contextmanager
def quiet_console(
    verbose: bool = False,
    log_file: Optional[str] = None,
    plain_info: bool = False,
    warnings_file: Optional[str] = None,
) -> Iterator[None]:
    """mmengine's INFO goes to the log files only while this lasts, and so
    do third-party warnings (:func:`is_third_party`); the project's
    warnings and every error still reach the console, each warning once.

    Args:
        verbose (bool): keep mmengine's full console output instead.
        log_file (str, optional): also write the current logger's
            messages (every level) to this file while this lasts, for work
            done outside a runner (which keeps its own log in its work
            dir). Third-party warnings go there too, unless
            ``warnings_file`` is given or an outer context has a file.
        plain_info (bool): the current logger's INFO is for people (a tool
            without a runner, whose log is its result): show it as bare
            messages instead of hiding it. Runners stay quiet.
        warnings_file (str, optional): where third-party warnings go.
            Without a file anywhere they are held and shown on the console
            when the outermost context ends.
    """
    verbose_token = _VERBOSE.set(verbose)
    outer = _QUIET.get()
    quiet = None if verbose else _Quiet(outer)
    quiet_token = _QUIET.set(quiet)
    show = warnings.showwarning
    if quiet is not None and outer is None:  # an outer one filters already
        warnings.showwarning = _show_once(quiet, show)
    notices_file = None
    if quiet is not None:
        # The first context with a file keeps them all.
        notices_file = warnings_file
        if notices_file is None and not quiet.notices.streams:
            notices_file = log_file
    if notices_file is not None:
        mkdir_or_exist(osp.dirname(osp.abspath(notices_file)))
        quiet.notices.push(open(notices_file, 'a', encoding='utf-8'))
    logger = MMLogger.get_current_instance()
    file_handler = None
    if log_file is not None:
        mkdir_or_exist(osp.dirname(osp.abspath(log_file)))
        file_handler = logging.FileHandler(log_file, 'a', encoding='utf-8')
        file_handler.setFormatter(
            MMFormatter(color=False, datefmt='%Y/%m/%d %H:%M:%S')
        )
        file_handler.setLevel(logging.INFO)
        logger.addHandler(file_handler)
    quiet_logger(logger, plain_info=plain_info)
    try:
        yield
    finally:
        if file_handler is not None:
            logger.removeHandler(file_handler)
            file_handler.close()
        warnings.showwarning = show
        if quiet is not None:
            for handler, level, formatter in reversed(quiet.restore):
                handler.setLevel(level)
                handler.setFormatter(formatter)
                handler.removeFilter(quiet.third_party)
                handler.removeFilter(quiet.logged)
            for _ in range(quiet.kept + (notices_file is not None)):
                quiet.notices.pop()
            if outer is None and quiet.notices.pending:
                # No log to keep them: the console, as without this.
                sys.stderr.write(''.join(quiet.notices.pending))
                sys.stderr.flush()
        _QUIET.reset(quiet_token)
        _VERBOSE.reset(verbose_token)


def keep_warnings_in(work_dir: str) -> Optional[str]:
    """Sends the surrounding quiet console's third-party warnings (those
    held so far too) to ``work_dir/warnings.log`` until it ends; returns
    that file, or ``None`` outside a quiet console (nothing changes).

    For a script that knows its work dir only once it has parsed its
    arguments (a benchmark)::

        if __name__ == '__main__':
            with quiet_console():
                main()  # calls keep_warnings_in(work_dir)
    """
    quiet = _QUIET.get()
    if quiet is None:
        return None
    warnings_file = osp.join(work_dir, WARNINGS_LOG)
    mkdir_or_exist(osp.abspath(work_dir))
    quiet.notices.push(open(warnings_file, 'a', encoding='utf-8'))
    quiet.kept += 1
    return warnings_file


def quiet_while_running(fn: Callable) -> Callable:
    """Runs ``fn`` inside ``quiet_console``, as verbose as its caller's
    console: quiet from its first line, whatever logger is current."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with quiet_console(verbose=console_is_verbose()):
            return fn(*args, **kwargs)

    return wrapper


def echo(msg: str) -> None:
    """Shows ``msg`` on a quiet console (a verbose one has it from the
    log already), from the main process only."""
    if not console_is_verbose() and is_main_process():
        print(msg, flush=True)


def say(msg: str) -> None:
    """Logs ``msg`` and shows it on the console, quiet or verbose."""
    print_log(msg, logger='current')
    echo(msg)


def stage(index: int, total: int, what: str) -> None:
    """The one console line of a stage: ``[index/total] what``."""
    say(f'[{index}/{total}] {what}')


class ProgressBar:
    """A bar redrawn in place on a terminal; on anything else (CI, a pipe)
    a line at every quarter, so that logs stay short.

    Args:
        total (int): steps to the end.
        desc (str): its label.
        initial (int): steps already done (a resumed run).
        stream: where to draw it (default ``sys.stderr``).
        enabled (bool): ``False`` shows nothing.
    """

    MARKS = 4

    def __init__(
        self,
        total: int,
        desc: str,
        initial: int = 0,
        stream=None,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.total = max(int(total), 0)
        self.desc = desc
        self.n = int(initial)
        self.stream = sys.stderr if stream is None else stream
        self._start = time.time()
        self._next_mark = 1
        self._bar = None
        if enabled and self.stream.isatty():
            self._bar = tqdm(
                total=self.total,
                initial=self.n,
                desc=desc,
                file=self.stream,
                dynamic_ncols=True,
            )

    def update(self, n: int = 1, **postfix) -> None:
        """Advances by ``n`` steps; ``postfix`` (e.g. ``loss=0.4``) is
        shown beside the bar."""
        self.n += n
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)
            return
        if not (self.enabled and self.total):
            return
        # The last quarter reached, one line however many it passes.
        mark = min(self.MARKS, self.n * self.MARKS // self.total)
        if mark >= self._next_mark:
            self._next_mark = mark + 1
            extra = ''.join(f', {k} {v}' for k, v in postfix.items())
            print(
                f'  {self.desc}: {self.n}/{self.total} '
                f'({time.time() - self._start:.0f} s{extra})',
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        """Ends the bar (a terminal keeps its last state)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
