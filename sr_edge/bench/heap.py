"""A steady-state heap for latency rows: freed memory stays mapped between runs.

A deployed SR loop runs the same frame size again and again. glibc's default heuristics
hand large freed blocks back to the kernel (``munmap``, heap trimming), so the next call
page-faults the same memory in again, 4 KiB at a time. How much of that happens depends
on the process's allocation history, not on the model or the runtime: on the ci-cpu VM
one eager (NCHW) PyTorch forward of ecbsr-m4c16 x2 at 640x360 took 37,600-57,400 fresh
page faults and 105-129 ms p50 in four processes; with freed memory kept, 0 faults and
53 ms in each (``python docs/studies/heap_check.py``). ONNX Runtime and OpenVINO keep their
own arenas, so it was the peers (PyTorch eager, OpenCV, bicubic) that paid, unevenly.

``steady_heap()`` sets glibc's ``M_MMAP_MAX`` to 0 (large blocks come from the heap) and
``M_TRIM_THRESHOLD`` to 2 GiB (the heap is not trimmed after each free) for the duration
of the bench, and restores glibc's documented defaults after it. ``release()`` (run before
each row) trims what earlier rows freed, so every row's RSS baseline and peak are its own.
Outside glibc (macOS, musl, Windows) it changes nothing and says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator
from functools import cache

HEAP_MODES = ("steady", "default")

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_TRIM = 2**31 - 1  # mallopt takes a C int: 2 GiB
_DEFAULT_TRIM = 128 * 1024  # glibc's defaults (mallopt(3))
_DEFAULT_MMAP_MAX = 65536


@cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version
        libc.mallopt, libc.malloc_trim  # noqa: B018  (both must exist)
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def glibc_version() -> str | None:
    """glibc's version string, or None where the C library is not glibc."""
    libc = _glibc()
    return None if libc is None else libc.gnu_get_libc_version().decode()


def describe(mode: str, applied: bool | None = None) -> str:
    """What ``mode`` does on this machine, as the results file records it.

    ``applied`` is what ``steady_heap`` yielded, once known: ``False`` for "steady" means
    glibc refused the settings, and the line says so.
    """
    if mode == "default":
        return "default: the C library's own heuristics"
    version = glibc_version()
    if version is None:
        return "steady requested; not glibc, so the C library's own heuristics"
    if applied is False:
        return f"steady requested; glibc {version} refused mallopt, so the C library's own heuristics"
    return f"steady: glibc {version} mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB; trimmed before each row"


def release() -> None:
    """Give memory freed so far back to the kernel (``malloc_trim``); no-op outside glibc."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@contextlib.contextmanager
def steady_heap(mode: str = "steady") -> Iterator[bool]:
    """Keep freed memory mapped inside the block (``mode="steady"``); yields whether it applies."""
    libc = _glibc() if mode == "steady" else None
    if libc is None:
        yield False
        return
    applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_TRIM))
    try:
        yield applied
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM)
        libc.malloc_trim(0)
