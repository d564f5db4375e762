"""The bench's steady-state heap: freed memory stays mapped, so a repeated frame-sized
allocation stops page-faulting; outside the block glibc's defaults come back.

Each measurement runs in a fresh interpreter: page faults depend on the process's whole
allocation history, and in the full suite earlier tests (runtimes with their own
allocators and thread pools) left freed frames mapped even after glibc's settings were
reset, so the same test passed alone and failed in CI's order.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sr_edge.bench import heap

pytestmark = pytest.mark.skipif(heap.glibc_version() is None, reason="the steady heap needs glibc")

# malloc, write and free one frame-sized buffer straight through glibc (numpy would advise
# huge pages and fault 2 MiB at a time); report minor faults per frame for each mode.
_PROBE = """
import ctypes, json, resource, sys
from sr_edge.bench import heap

FRAME = 48 * 1024 * 1024  # bytes: above glibc's largest dynamic mmap threshold (32 MiB)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def frame():
    ptr = libc.malloc(FRAME)
    assert ptr
    ctypes.memset(ptr, 1, FRAME)
    libc.free(ptr)

def faults_per_frame(frames=4):
    frame()  # the first touch maps the memory in any mode
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(frames):
        frame()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / frames

out = {"pages": FRAME / resource.getpagesize()}
with heap.steady_heap(sys.argv[1]) as applied:
    out["applied"] = applied
    out["inside"] = faults_per_frame()
out["after"] = faults_per_frame()
print(json.dumps(out))
"""


def _probe(mode: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_steady_heap_keeps_freed_frames_mapped() -> None:
    got = _probe("steady")
    assert got["applied"]
    assert got["inside"] < 0.01 * got["pages"], got
    assert got["after"] > 0.9 * got["pages"], got  # defaults again: each frame is mapped in afresh


def test_default_mode_changes_nothing_and_says_so() -> None:
    got = _probe("default")
    assert not got["applied"]
    assert got["inside"] > 0.9 * got["pages"], got
    assert heap.describe("default").startswith("default")
    assert heap.describe("steady").startswith("steady: glibc ")
    assert heap.describe("steady", applied=False).startswith("steady requested; glibc ")
