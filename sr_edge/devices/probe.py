"""Reading the machine: CPU name, vendor and flags, usable cores, clock, memory, GPU vendors.

Linux only reads files (``/proc/cpuinfo``, ``/proc/meminfo``, ``/sys``); elsewhere the
``platform`` module gives the name and architecture and the rest stays unknown. Nothing here
imports a runtime. The parsers take text, and :func:`probe_machine` takes the file-system
root and the CPU set, so tests can stand in for any machine.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .schema import MachineFacts

_GPU_PCI_VENDORS = {"0x10de": "nvidia", "0x8086": "intel", "0x1002": "amd"}


@dataclass(frozen=True)
class CpuInfo:
    """What ``/proc/cpuinfo`` says (the first CPU's entry; the clock is the highest listed)."""

    model_name: str | None
    vendor: str
    family: int | None
    model: int | None
    flags: frozenset[str]
    mhz: float | None


def _int(text: str) -> int | None:
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse ``/proc/cpuinfo`` (x86 ``flags`` or Arm ``Features``)."""
    first: dict[str, str] = {}
    mhz: list[float] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "cpu mhz":
            try:
                mhz.append(float(value))
            except ValueError:
                pass
        first.setdefault(key, value)
    flags = first.get("flags", first.get("features", ""))
    family = first.get("cpu family")
    model = first.get("model")
    return CpuInfo(
        model_name=first.get("model name") or None,
        vendor=first.get("vendor_id", ""),
        family=_int(family) if family else None,
        model=_int(model) if model else None,
        flags=frozenset(flags.split()),
        mhz=max(mhz) if mhz else None,
    )


def parse_meminfo(text: str) -> float | None:
    """``MemTotal`` of ``/proc/meminfo`` in GiB, or None."""
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.MULTILINE)
    return int(m.group(1)) / 2**20 if m else None


def clock_from(model_name: str | None, max_khz: str | None, mhz: float | None) -> tuple[float | None, str]:
    """(GHz, where it was read), preferring figures that do not move with the load.

    The ``@ 2.10GHz`` of the CPU name (the vendor's base clock) first; then cpufreq's
    maximum (the boost ceiling, fixed per CPU); last the ``cpu MHz`` of /proc/cpuinfo,
    which on a VM is the constant TSC rate but on bare metal follows the load, so it is
    rounded to 0.1 GHz to keep a re-run's profile (and its results fingerprint) the same.
    """
    m = re.search(r"@\s*(\d+(?:\.\d+)?)\s*GHz", model_name or "", re.IGNORECASE)
    if m:
        return float(m.group(1)), "CPU name"
    khz = _int(max_khz) if max_khz else None
    if khz:
        return round(khz / 1e6, 2), "cpufreq max"
    if mhz:
        return round(mhz / 1000, 1), "cpu MHz"
    return None, ""


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity, which a container or taskset narrows)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def physical_cores(cpus: Iterable[int], root: Path = Path("/")) -> int | None:
    """Distinct (package, core) pairs among ``cpus``: SMT siblings share one core's vector units."""
    seen: set[tuple[str, str]] = set()
    for n in cpus:
        topo = root / f"sys/devices/system/cpu/cpu{n}/topology"
        core, package = _read(topo / "core_id"), _read(topo / "physical_package_id")
        if core is None or package is None:
            return None
        seen.add((package.strip(), core.strip()))
    return len(seen) or None


def gpu_vendors(root: Path = Path("/")) -> tuple[str, ...]:
    """GPU vendors present: PCI display devices, the NVIDIA driver, a Jetson's integrated GPU."""
    vendors: set[str] = set()
    drm = root / "sys/class/drm"
    if drm.is_dir():
        for card in drm.glob("card[0-9]*"):
            vendor = _read(card / "device" / "vendor")
            if vendor and vendor.strip() in _GPU_PCI_VENDORS:
                vendors.add(_GPU_PCI_VENDORS[vendor.strip()])
    if (root / "proc/driver/nvidia/gpus").is_dir() or (root / "dev/nvidia0").exists():
        vendors.add("nvidia")
    if (root / "etc/nv_tegra_release").exists() or (root / "dev/nvhost-ctrl-gpu").exists():
        vendors.add("nvidia")  # Jetson: the integrated GPU has no PCI vendor file
    return tuple(sorted(vendors))


def _memory_gb(root: Path) -> float | None:
    total = parse_meminfo(_read(root / "proc/meminfo") or "")
    # A container's cgroup limit is the memory this process can have, when it is lower.
    limit = _int(_read(root / "sys/fs/cgroup/memory.max") or "")
    if limit and total:
        total = min(total, limit / 2**30)
    return round(total, 1) if total else None


@functools.cache
def int8_cpu_class() -> str:
    """``"vnni"`` where this CPU has VNNI dot products (AVX512_VNNI or AVX-VNNI), else ``"no-vnni"``.

    The int8 kernels differ between the two (u8 x s8 products without VNNI saturate in
    ``vpmaddubsw``), so an int8 bundle's best file per runtime is measured per class
    (``placements_by_cpu`` in its manifest)."""
    return "vnni" if any("vnni" in f for f in probe_machine().isa) else "no-vnni"


def probe_machine(root: Path = Path("/"), cpus: Iterable[int] | None = None, arch: str | None = None) -> MachineFacts:
    """The facts detection uses, read from this machine (or from a tree under ``root``).

    ``cpus`` (default: this process's affinity) and ``arch`` (default: ``platform.machine()``)
    let a caller describe another machine.
    """
    info = parse_cpuinfo(_read(root / "proc/cpuinfo") or "")
    usable = sorted(usable_cpus() if cpus is None else set(cpus))
    first = usable[0] if usable else 0
    clock, clock_source = clock_from(
        info.model_name, _read(root / f"sys/devices/system/cpu/cpu{first}/cpufreq/cpuinfo_max_freq"), info.mhz
    )
    board = _read(root / "proc/device-tree/model")
    return MachineFacts(
        arch=arch or platform.machine(),
        cpu=info.model_name or platform.processor() or platform.machine(),
        cores=max(1, len(usable)),
        isa=info.flags,
        board=board.strip("\x00\n ") if board else None,
        gpus=gpu_vendors(root),
        vendor=info.vendor,
        family=info.family,
        model=info.model,
        physical_cores=physical_cores(usable, root),
        clock_ghz=clock,
        clock_source=clock_source,
        memory_gb=_memory_gb(root),
    )
