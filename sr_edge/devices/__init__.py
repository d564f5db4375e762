"""Device profiles: what a target runs, at what size, under which budget, with what peak.

A profile is one TOML file in ``devices/`` (``devices/<name>.toml``; the file name is the
profile's name). It holds four tables, each loaded into a frozen dataclass validated on
construction; an unknown key or a bad value is a one-line :class:`SrEdgeError` naming the
file and the key (``devices/x.toml: runtime.threads: must be a positive integer, got 0``)::

    name = "ci-cpu"
    description = "..."

    [runtime]            # how models run there
    backends = ["openvino", "ort"]     # in order of preference
    precisions = ["fp32", "bf16", "int8"]
    device = "cpu"
    threads = 2                        # optional: runtime default when absent
    peers = ["bicubic", "torch", "opencv"]

    [workload]           # what the product needs
    resolutions = ["640x360"]          # LR input frames, WIDTHxHEIGHT; the first is primary
    scales = [2, 3, 4]
    latency_budget_ms = 100.0
    memory_budget_mb = 2048
    datasets = ["Set5", "Set14"]       # quality; the embedded samples when none is found

    [hardware]           # vendor peak figures, cited in a comment in the file
    peak_fp32_gflops = 474.0
    peak_fp16_gflops = ...             # optional (absent: no native fp16)
    peak_bf16_gflops = ...             # optional
    peak_int8_gops = 1894.0            # optional
    memory_bandwidth_gbs = 38.0
    memory_gb = 23.0                   # optional
    estimated = false                  # optional: true when the figures are derived, not a vendor's
    notes = []                         # optional: how each figure was derived

    [detect]             # how `sr-edge devices --detect` recognises the machine
    arch = ["x86_64"]                  # every listed criterion must match
    cpu = ["AMD EPYC"]                 # substrings of the CPU name (any one)
    isa = ["avx512f"]                  # CPU flags (all)
    cores = [1, 4]                     # logical CPUs usable, inclusive range
    board = ["Orin Nano"]              # substrings of the device-tree model (Jetson)
    gpu = ["nvidia"]                   # GPU vendors present (any one)

A profile without ``[detect]`` is chosen by name only. When no named profile fits the
machine, :func:`detect` builds one from what the machine reports (its cores, ISA features,
clock and memory: :func:`profile_from_machine`), with ``source = "detected"`` and its
hardware figures labelled estimated.

Modules: :mod:`.schema` (the dataclasses and TOML validation), :mod:`.search` (finding and
loading profiles, ranking them), :mod:`.probe` (reading the machine), :mod:`.estimate`
(the profile built from the machine). Nothing here imports a runtime: detection reads
``/proc`` and ``/sys``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .estimate import Estimate, detected_name, estimate, profile_from_machine
from .probe import CpuInfo, parse_cpuinfo, parse_meminfo, probe_machine
from .schema import (
    BACKENDS,
    GPU_VENDORS,
    PEERS,
    Detect,
    DeviceProfile,
    Hardware,
    MachineFacts,
    ProfileError,
    Resolution,
    Runtime,
    Workload,
    profile_from_mapping,
)
from .search import (
    DEVICES_DIR,
    DEVICES_ENV,
    Detection,
    list_profiles,
    load_profile,
    load_profile_file,
    profile_paths,
    rank,
    search_dirs,
)

__all__ = [
    "BACKENDS",
    "DEVICES_DIR",
    "DEVICES_ENV",
    "GPU_VENDORS",
    "PEERS",
    "CpuInfo",
    "Detect",
    "Detection",
    "DeviceProfile",
    "Estimate",
    "Hardware",
    "MachineFacts",
    "ProfileError",
    "Resolution",
    "Runtime",
    "Workload",
    "detect",
    "detected_name",
    "estimate",
    "list_profiles",
    "load_profile",
    "load_profile_file",
    "parse_cpuinfo",
    "parse_meminfo",
    "probe_machine",
    "profile_from_machine",
    "profile_from_mapping",
    "profile_paths",
    "rank",
    "search_dirs",
]


def detect(facts: MachineFacts | None = None, profiles: Sequence[DeviceProfile] | None = None) -> list[Detection]:
    """Every profile matched against the machine, best first (matching, named, most specific).

    With ``profiles`` omitted: every profile found, then the one built from the machine
    (:func:`profile_from_machine`), which always matches and ranks after every matching
    named profile, so the first match is a named profile when one fits and the machine's
    own otherwise. With ``profiles`` given, only those are ranked.
    """
    # Defined here rather than in .search so that it probes through this package's
    # `probe_machine`: the one public name, which callers and tests replace to stand in for
    # another machine (and .search importing this package back would be an import cycle).
    facts = facts or probe_machine()
    if profiles is None:
        profiles = [*(load_profile_file(p) for p in profile_paths().values()), profile_from_machine(facts)]
    return rank(facts, profiles)
