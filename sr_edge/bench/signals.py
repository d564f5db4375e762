"""The benchmark's Ctrl-C guard: SIGINT still raises ``KeyboardInterrupt`` and is also remembered."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def ctrl_c_seen() -> Iterator[Callable[[], bool]]:
    """Ctrl-C as usual (``KeyboardInterrupt``), also remembered.

    A guard: a runtime that is inside its own code when the signal lands could turn the
    ``KeyboardInterrupt`` into its own exception (an ImportError, as onnxruntime's imports
    did, which is why runtimes are imported up front; never seen at session build or run
    time), which a row would then record as failed or skipped. The runner asks this flag
    after every row, so such a Ctrl-C would still end the run, and that row is not kept.
    """
    hits: list[int] = []
    if (
        threading.current_thread() is not threading.main_thread()  # handlers belong to the main thread
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # ignored (nohup) or the caller's own
    ):
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        hits.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hits)
    finally:
        signal.signal(signal.SIGINT, previous)
