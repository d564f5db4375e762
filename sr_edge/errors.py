"""Errors that reach the user as one line.

Anything raised as :class:`SrEdgeError` is the user's to fix (a bad path, a bad option,
a missing optional dependency); the CLI prints its message on one line and exits non-zero.
Any other exception is a bug in sr-edge and keeps its traceback.
"""

from __future__ import annotations


class SrEdgeError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DatasetNotFoundError(SrEdgeError):
    """No dataset of that name or path exists; a found dataset that is broken is a plain SrEdgeError."""


class MissingDependencyError(SrEdgeError):
    """An optional dependency is not installed; the message names the pip extra."""

    def __init__(self, what: str, extra: str, module: str | None = None) -> None:
        detail = f" ({module} is not importable)" if module else ""
        super().__init__(f"{what} needs an optional dependency{detail}: pip install 'sr-edge[{extra}]'")
        self.extra = extra


def one_line(message: str) -> str:
    """Collapse a message onto one line (third-party errors often span several)."""
    return " ".join(str(message).split())


class Terminated(BaseException):
    """SIGTERM, raised in the main thread while the CLI runs (:mod:`sr_edge.boundary`).

    A ``BaseException``, as ``KeyboardInterrupt`` is: no ``except Exception`` swallows it,
    and every ``finally`` and ``except BaseException`` cleanup on the way out still runs
    (temp files removed), before the CLI exits 143 with one line.
    """
