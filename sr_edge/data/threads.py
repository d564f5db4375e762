"""Threads for per-frame pixel work: Pillow's resampler and NumPy's ufuncs release the GIL.

A deployed frame of a Y-channel model spends as long in its colour work (bicubic chroma,
YCbCr -> RGB at the output size) as in the network at x4; that work is split over a small
pool shared by every upscaler in the process. Results do not depend on the thread count.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Threads for pixel work when the caller does not say: 2 where the machine has them."""
    return min(2, os.cpu_count() or 1)


@functools.cache
def _executor(pid: int, workers: int) -> ThreadPoolExecutor:
    # keyed by pid: a forked child inherits the pool object but not its threads
    return ThreadPoolExecutor(workers, thread_name_prefix=f"sr-edge-pixels-{pid}")


def map_threads(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``[fn(i) for i in items]``, run on up to ``workers`` threads (in order, inline for 1)."""
    todo = list(items)
    n = min(workers, len(todo))
    if n <= 1:
        return [fn(i) for i in todo]
    return list(_executor(os.getpid(), n).map(fn, todo))
