"""Peak memory of one benchmark row: process RSS (and GPU memory where there is a GPU).

On Linux the kernel's RSS high-water mark (``VmHWM``) is reset per row by writing ``5``
to ``/proc/self/clear_refs``, so each row's peak is its own. Where that is not possible
the lifetime peak from ``getrusage`` is reported and flagged ``resettable: false``.
GPU memory is the device's used memory from ``nvidia-smi`` (all processes), sampled
before the session is built and after each phase; absent without an NVIDIA GPU.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb() -> float | None:
    """Current resident set size of this process (MiB)."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else None


def _maxrss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark for this process; False where unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float | None:
    """The RSS high-water mark (MiB) since the last reset (or process start)."""
    kb = _status_kb("VmHWM")
    return kb / 1024 if kb is not None else _maxrss_mb()


def gpu_used_mb() -> float | None:
    """Used memory of the first NVIDIA GPU (MiB, all processes), or None without one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return float(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class MemoryStats:
    """Peak RSS during the row, its rise over the RSS before it, and the GPU's rise."""

    rss_peak_mb: float | None
    rss_delta_mb: float | None
    resettable: bool
    gpu_delta_mb: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return asdict(self)


class MemoryProbe:
    """Context manager: ``with MemoryProbe() as m: ...; m.sample(); stats = m.stats()``."""

    def __enter__(self) -> MemoryProbe:
        self._resettable = reset_peak_rss()
        self._rss0 = rss_mb()
        self._gpu0 = gpu_used_mb()
        self._gpu_peak = self._gpu0
        return self

    def sample(self) -> None:
        """Record the GPU's used memory now (RSS peaks are tracked by the kernel)."""
        if self._gpu0 is not None:
            now = gpu_used_mb()
            if now is not None and (self._gpu_peak is None or now > self._gpu_peak):
                self._gpu_peak = now

    def stats(self) -> MemoryStats:
        """The row's memory figures so far."""
        peak = peak_rss_mb()
        delta = peak - self._rss0 if peak is not None and self._rss0 is not None else None
        gpu = self._gpu_peak - self._gpu0 if self._gpu0 is not None and self._gpu_peak is not None else None
        r = lambda v: round(v, 1) if v is not None else None  # noqa: E731
        return MemoryStats(r(peak), r(delta), self._resettable, r(gpu))

    def __exit__(self, *exc: object) -> None:
        return None
