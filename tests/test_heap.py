"""The bench's steady-state heap: freed memory stays mapped, so a repeated frame-sized
allocation stops page-faulting; outside the block glibc's defaults come back."""

from __future__ import annotations

import ctypes
import resource

import pytest

from sr_edge.bench import heap

pytestmark = pytest.mark.skipif(heap.glibc_version() is None, reason="the steady heap needs glibc")

FRAME = 48 * 1024 * 1024  # bytes: above glibc's largest dynamic mmap threshold (32 MiB)


@pytest.fixture(autouse=True)
def glibc_defaults() -> None:
    """Start from glibc's own settings: in the full suite an earlier test left freed frames
    mapped (zero faults per frame outside any steady block; which test is not found yet), and
    these tests measure what steady_heap changes, not what other tests leave."""
    libc = heap._glibc()
    assert libc is not None
    libc.mallopt(heap._M_MMAP_MAX, heap._DEFAULT_MMAP_MAX)
    libc.mallopt(heap._M_TRIM_THRESHOLD, heap._DEFAULT_TRIM)
    libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: glibc's default
    libc.malloc_trim(0)


def _frame() -> None:
    """malloc, write and free one frame-sized buffer (straight through glibc: numpy would
    advise huge pages and fault 2 MiB at a time)."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    ptr = libc.malloc(FRAME)
    assert ptr
    ctypes.memset(ptr, 1, FRAME)
    libc.free(ptr)


def _faults_per_frame(frames: int = 4) -> float:
    """Minor page faults per allocate-write-free of one frame-sized buffer."""
    _frame()  # the first touch maps the memory in any mode
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(frames):
        _frame()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / frames


def test_steady_heap_keeps_freed_frames_mapped() -> None:
    pages = FRAME / resource.getpagesize()
    with heap.steady_heap("steady") as applied:
        assert applied
        kept = _faults_per_frame()
    returned = _faults_per_frame()  # defaults again: each frame is mapped in afresh
    assert kept < 0.01 * pages, kept
    assert returned > 0.9 * pages, returned


def test_default_mode_changes_nothing_and_says_so() -> None:
    with heap.steady_heap("default") as applied:
        assert not applied
        assert _faults_per_frame() > 0.9 * FRAME / resource.getpagesize()
    assert heap.describe("default").startswith("default")
    assert heap.describe("steady").startswith("steady: glibc ")
    assert heap.describe("steady", applied=False).startswith("steady requested; glibc ")
