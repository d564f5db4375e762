"""The CLI's one error boundary: every failure a user can meet comes out as one line.

:func:`run_cli` runs a verb and turns what escapes it into an exit code and at most one
line on stderr, so that a new verb gets the same behaviour without writing any of it:

- :class:`~sr_edge.errors.SrEdgeError`: its message, exit 2;
- an expected operating-system failure (no space, permission, read-only file system,
  symbolic-link loop, name too long, a path that is not there, a closed pipe or a full
  device on standard output): the path, what happened and what to do, exit 2;
- Ctrl-C: exit 130; SIGTERM: exit 143, each with one line. SIGTERM is turned into
  :class:`~sr_edge.errors.Terminated` (a ``BaseException``, like ``KeyboardInterrupt``),
  so the ``finally`` / ``except BaseException`` cleanups on the way out run and remove
  their temp files (the default action of SIGTERM would skip them);
- anything else is a bug in sr-edge: its traceback, then one line asking for a report,
  exit 1. Real bugs are not dressed up as user errors.

:func:`interrupt_guard` is for code that must catch ``Exception`` around a third-party call
(to fall back, or to record a failed row): some libraries turn a ``KeyboardInterrupt``
raised inside them into their own exception, and the guard tells that such an exception
was really Ctrl-C (or SIGTERM), so it is re-raised instead of handled as a failure.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from .errors import SrEdgeError, Terminated, one_line

EXIT_USER_ERROR = 2
EXIT_BUG = 1  # what Python itself exits with on an uncaught exception
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143

STDOUT = "standard output"
_MAX_PATH_SHOWN = 160  # a name too long to open is too long to print in full on one line

# What to do about each expected failure of the operating system (by errno). Other errors
# that name a path still come out as one line, with the system's own words.
_ADVICE: dict[int, str] = {
    errno.ENOSPC: "no space left on the device; free some space or write to another disk, then run again",
    errno.EDQUOT: "disk quota exceeded; free some space or write to another disk, then run again",
    errno.EFBIG: "file too large for this file system; write to another disk",
    errno.EACCES: "permission denied; check the permissions or choose another path",
    errno.EPERM: "operation not permitted; check the permissions or choose another path",
    errno.EROFS: "read-only file system; write to another disk or folder",
    errno.ELOOP: "a loop of symbolic links; fix the link or pass the real path",
    errno.ENAMETOOLONG: "file name too long; choose a shorter name or folder",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EISDIR: "is a folder, not a file; check the path",
    errno.EIO: "input/output error; the disk or network share failed, check it and run again",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or process fewer files at once",
    errno.EXDEV: "the temp file and the output are on different file systems; choose another output folder",
}
_NO_PATH_OK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EMFILE)
_SYMLINK_LOOP = re.compile(r"Symlink loop from '(.*)'", re.S)  # pathlib.Path.resolve before Python 3.13

_state = {"sigterm": 0}  # SIGTERMs seen while run_cli's handler was installed


def _say(line: str) -> None:
    """One line on stderr; a stderr that cannot take it is not worth a second failure."""
    try:
        print(f"sr-edge: {line}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _shown(path: object) -> str:
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    return text if len(text) <= _MAX_PATH_SHOWN else f"{text[: _MAX_PATH_SHOWN // 2]}...{text[-_MAX_PATH_SHOWN // 2 :]}"


def os_error_line(e: OSError) -> str | None:
    """The one line for an operating-system failure, or None where it is not an expected one
    (no path and no errno that explains itself: likely a bug, keep its traceback)."""
    if isinstance(e, BrokenPipeError) or e.errno == errno.EPIPE:
        where = _shown(e.filename) if e.filename is not None else STDOUT
        return f"error: {where}: the reader closed the pipe before the output was complete (broken pipe)"
    advice = _ADVICE.get(e.errno) if e.errno is not None else None
    if e.filename is None:
        if advice is None or e.errno not in _NO_PATH_OK:
            return None
        return f"error: {advice}"
    where = _shown(e.filename) + (f" -> {_shown(e.filename2)}" if e.filename2 is not None else "")
    return f"error: {where}: {advice or (e.strerror or one_line(str(e))) + '; check the path'}"


def _line_for(e: BaseException) -> str | None:
    """The one line for an exception a user can meet, or None for a bug."""
    if isinstance(e, SrEdgeError):
        return f"error: {one_line(str(e))}"
    if isinstance(e, OSError):
        return os_error_line(e)
    if isinstance(e, RuntimeError) and type(e) is RuntimeError:
        m = _SYMLINK_LOOP.fullmatch(str(e))
        if m is not None:  # how Path.resolve() reports ELOOP before Python 3.13
            return f"error: {_shown(m.group(1))}: {_ADVICE[errno.ELOOP]}"
    if isinstance(e, MemoryError):
        return "error: out of memory; use a smaller input (or a smaller --tile, --batch-size) or a larger machine"
    return None


class _NamedStdout:
    """``sys.stdout`` whose write failures name it: a print onto a full device or a closed
    pipe raises an OSError without a path, which would otherwise read as a file's error."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as e:
            raise _named_stdout(e) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            raise _named_stdout(e) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _named_stdout(e: OSError) -> OSError:
    return e if e.filename is not None else OSError(e.errno, e.strerror, STDOUT)


def _silence_stdout() -> None:
    """After stdout failed: point it at /dev/null, so the interpreter's own flush at exit
    does not print a second, multi-line complaint."""
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread while the block runs.

    A second SIGTERM during the cleanup gets the default action (the process ends), so a
    cleanup that hangs can still be stopped. A SIGTERM that the caller ignores stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _state["sigterm"] += 1
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_cli(verb: Callable[[], int]) -> int:
    """Run ``verb`` (parse and run one command) inside the boundary; return the exit code."""
    real_stdout = sys.stdout
    sys.stdout = _NamedStdout(real_stdout)
    stdout_failed = False
    try:
        with _sigterm_raises():
            try:
                code = verb()
                sys.stdout.flush()  # a full device or a closed pipe shows here, inside the boundary
                return code
            except Terminated:
                _say("terminated (SIGTERM); the output in progress was removed")
                return EXIT_TERMINATED
            except KeyboardInterrupt:
                _say("interrupted")
                return EXIT_INTERRUPTED
            except SystemExit:
                raise
            except BaseException as e:
                line = _line_for(e)
                stdout_failed = isinstance(e, OSError) and e.filename == STDOUT
                if line is None:
                    traceback.print_exc()
                    from .version import __version__

                    _say(
                        f"internal error: this is a bug in sr-edge {__version__}, not in your input; "
                        "please report it with the command you ran and the traceback above"
                    )
                    return EXIT_BUG
                _say(line)
                return EXIT_USER_ERROR
    finally:
        sys.stdout = real_stdout
        if stdout_failed:
            _silence_stdout()


@contextlib.contextmanager
def interrupt_guard() -> Iterator[Callable[[], None]]:
    """Yield ``check()``, which re-raises a Ctrl-C or SIGTERM that landed during the block.

    Call ``check()`` in an ``except Exception`` handler around a third-party call: where
    the library turned the ``KeyboardInterrupt`` (or :class:`Terminated`) into an error of
    its own, the interrupt is raised again instead of the error being handled as an
    ordinary failure (a fallback, a failed row). SIGINT is counted only where its handler
    is Python's default (not off the main thread, nor where a caller installed its own).
    """
    hits: list[int] = []
    terms = _state["sigterm"]
    own = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )

    def handler(signum: int, frame: Any) -> None:
        hits.append(signum)
        raise KeyboardInterrupt

    def check() -> None:
        if _state["sigterm"] != terms:
            raise Terminated()
        if hits:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler) if own else None
    try:
        yield check
    finally:
        if own:
            signal.signal(signal.SIGINT, previous)
