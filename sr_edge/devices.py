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

    [detect]             # how `sr-edge devices --detect` recognises the machine
    arch = ["x86_64"]                  # every listed criterion must match
    cpu = ["AMD EPYC"]                 # substrings of the CPU name (any one)
    isa = ["avx512f"]                  # CPU flags (all)
    cores = [1, 4]                     # logical CPUs usable, inclusive range
    board = ["Orin Nano"]              # substrings of the device-tree model (Jetson)
    gpu = ["nvidia"]                   # GPU vendors present (any one)

Profiles are found by name in ``devices/`` of the checkout, then in the folders of
``$SR_EDGE_DEVICES`` (``os.pathsep``-separated), or given as a path to a ``.toml`` file.
Nothing here imports a runtime: detection reads ``/proc`` and ``/sys``.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .errors import SrEdgeError, one_line
from .paths import devices_dir
from .types import PRECISIONS, SCALES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the backport
    import tomli as tomllib

DEVICES_DIR = devices_dir()
DEVICES_ENV = "SR_EDGE_DEVICES"

# Deployment runtimes a profile may name (sr_edge.backends implements them) and the peers
# the benchmark measures beside them. Kept here as names only: loading a profile must not
# import any runtime.
BACKENDS: tuple[str, ...] = ("ort", "openvino", "tensorrt")
PEERS: tuple[str, ...] = ("bicubic", "torch", "opencv")
GPU_VENDORS: tuple[str, ...] = ("nvidia", "intel", "amd")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_DEVICE = re.compile(r"^(cpu|gpu(\.\d+)?|cuda(:\d+)?|npu|auto)$")


class ProfileError(ValueError):
    """A bad value, raised by the dataclasses below with the dotted key it concerns."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _positive(key: str, value: Any, kind: type = float, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    ok_types: tuple[type[int] | type[float], ...] = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types) or not value > 0:
        what = "a positive integer" if kind is int else "a positive number"
        raise ProfileError(key, f"must be {what}, got {value!r}")
    return kind(value)


def _str_tuple(key: str, value: Any, allowed: Sequence[str] | None = None, empty_ok: bool = False) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ProfileError(key, f"must be a list of strings, got {value!r}")
    if not value and not empty_ok:
        raise ProfileError(key, "must not be empty")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item:
            raise ProfileError(key, f"must be a list of non-empty strings, got {item!r} in it")
        if allowed is not None and item not in allowed:
            raise ProfileError(key, f"{item!r} is not one of {', '.join(allowed)}")
        if item in out:
            raise ProfileError(key, f"lists {item!r} twice")
        out.append(item)
    return tuple(out)


@dataclass(frozen=True)
class Resolution:
    """A frame size in pixels (width x height), written ``"640x360"`` in profiles."""

    width: int
    height: int

    def __post_init__(self) -> None:
        for key, v in (("width", self.width), ("height", self.height)):
            if isinstance(v, bool) or not isinstance(v, int) or not 8 <= v <= 16384:
                raise ProfileError(key, f"must be an integer in 8..16384, got {v!r}")

    @classmethod
    def parse(cls, text: str, key: str = "resolution") -> Resolution:
        """``"640x360"`` -> Resolution(640, 360)."""
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text) if isinstance(text, str) else None
        if m is None:
            raise ProfileError(key, f"must look like WIDTHxHEIGHT (e.g. 640x360), got {text!r}")
        try:
            return cls(int(m.group(1)), int(m.group(2)))
        except ProfileError as e:
            raise ProfileError(key, f"{text!r}: {e.message}") from None

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Runtime:
    """How models run on the device: backends in order of preference and their settings."""

    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    device: str = "cpu"
    threads: int | None = None
    peers: tuple[str, ...] = PEERS

    def __post_init__(self) -> None:
        object.__setattr__(self, "backends", _str_tuple("backends", self.backends, BACKENDS))
        object.__setattr__(self, "precisions", _str_tuple("precisions", self.precisions, PRECISIONS))
        object.__setattr__(self, "peers", _str_tuple("peers", self.peers, PEERS, empty_ok=True))
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ProfileError("device", f"must be cpu, gpu, gpu.N, cuda, cuda:N, npu or auto, got {self.device!r}")
        object.__setattr__(self, "threads", _positive("threads", self.threads, int, allow_none=True))


@dataclass(frozen=True)
class Workload:
    """What the product asks of the device: frame sizes, scales and budgets."""

    resolutions: tuple[Resolution, ...]
    scales: tuple[int, ...]
    latency_budget_ms: float
    memory_budget_mb: float
    datasets: tuple[str, ...] = ("Set5", "Set14")

    def __post_init__(self) -> None:
        if isinstance(self.resolutions, str) or not isinstance(self.resolutions, (list, tuple)) or not self.resolutions:
            raise ProfileError("resolutions", f"must be a non-empty list like ['640x360'], got {self.resolutions!r}")
        res = tuple(r if isinstance(r, Resolution) else Resolution.parse(r, "resolutions") for r in self.resolutions)
        if len(set(res)) != len(res):
            raise ProfileError("resolutions", "lists a resolution twice")
        object.__setattr__(self, "resolutions", res)
        if isinstance(self.scales, (str, int)) or not isinstance(self.scales, (list, tuple)) or not self.scales:
            raise ProfileError("scales", f"must be a non-empty list of {', '.join(map(str, SCALES))}")
        for s in self.scales:
            if isinstance(s, bool) or s not in SCALES:
                raise ProfileError("scales", f"{s!r} is not one of {', '.join(map(str, SCALES))}")
        if len(set(self.scales)) != len(self.scales):
            raise ProfileError("scales", "lists a scale twice")
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        object.__setattr__(self, "latency_budget_ms", _positive("latency_budget_ms", self.latency_budget_ms))
        object.__setattr__(self, "memory_budget_mb", _positive("memory_budget_mb", self.memory_budget_mb))
        object.__setattr__(self, "datasets", _str_tuple("datasets", self.datasets, empty_ok=True))

    @property
    def primary(self) -> Resolution:
        """The first resolution: the one reports plot."""
        return self.resolutions[0]


@dataclass(frozen=True)
class Hardware:
    """Vendor peak figures (each profile cites its sources in a comment)."""

    peak_fp32_gflops: float
    memory_bandwidth_gbs: float
    peak_fp16_gflops: float | None = None
    peak_bf16_gflops: float | None = None
    peak_int8_gops: float | None = None
    memory_gb: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            optional = f.name not in ("peak_fp32_gflops", "memory_bandwidth_gbs")
            object.__setattr__(self, f.name, _positive(f.name, getattr(self, f.name), float, allow_none=optional))

    def peak(self, precision: str) -> float | None:
        """Peak operations per second (G) for a precision, or None when the vendor gives none."""
        return {
            "fp32": self.peak_fp32_gflops,
            "fp16": self.peak_fp16_gflops,
            "bf16": self.peak_bf16_gflops,
            "int8": self.peak_int8_gops,
        }.get(precision)


@dataclass(frozen=True)
class MachineFacts:
    """What detection looks at on the machine it runs on."""

    arch: str
    cpu: str
    cores: int
    isa: frozenset[str]
    board: str | None
    gpus: tuple[str, ...]

    def describe(self) -> str:
        """One line for people."""
        gpus = ", ".join(self.gpus) or "none"
        board = f", board {self.board!r}" if self.board else ""
        return f"{self.arch}, CPU {self.cpu!r}, {self.cores} logical CPUs{board}, GPUs: {gpus}"


@dataclass(frozen=True)
class Detect:
    """Criteria that recognise the device; every criterion given must hold."""

    arch: tuple[str, ...] = ()
    cpu: tuple[str, ...] = ()
    isa: tuple[str, ...] = ()
    cores: tuple[int, int] | None = None
    board: tuple[str, ...] = ()
    gpu: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("arch", "cpu", "isa", "board"):
            object.__setattr__(self, name, _str_tuple(name, getattr(self, name), empty_ok=True))
        object.__setattr__(self, "gpu", _str_tuple("gpu", self.gpu, GPU_VENDORS, empty_ok=True))
        if self.cores is not None:
            c = self.cores
            if (
                isinstance(c, (str, int))
                or not isinstance(c, (list, tuple))
                or len(c) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in c)
                or c[0] > c[1]
            ):
                raise ProfileError("cores", f"must be [min, max] logical CPUs with 1 <= min <= max, got {c!r}")
            object.__setattr__(self, "cores", (int(c[0]), int(c[1])))

    def match(self, facts: MachineFacts) -> tuple[bool, tuple[str, ...]]:
        """(all criteria hold, one reason per criterion: why it holds or fails)."""
        checks: list[tuple[bool, str]] = []
        if self.arch:
            checks.append((facts.arch in self.arch, f"architecture {facts.arch} in {list(self.arch)}"))
        if self.cpu:
            hit = [p for p in self.cpu if p.lower() in facts.cpu.lower()]
            checks.append((bool(hit), f"CPU name {facts.cpu!r} contains {hit[0] if hit else list(self.cpu)!r}"))
        if self.isa:
            missing = [f for f in self.isa if f not in facts.isa]
            checks.append(
                (not missing, f"CPU flags {' '.join(self.isa)}" + (f" (missing {missing})" if missing else ""))
            )
        if self.cores is not None:
            lo, hi = self.cores
            checks.append((lo <= facts.cores <= hi, f"{facts.cores} logical CPUs in {lo}..{hi}"))
        if self.board:
            board = facts.board or ""
            hit = [p for p in self.board if p.lower() in board.lower()]
            checks.append((bool(hit), f"board {board or '(none)'!r} contains {hit[0] if hit else list(self.board)!r}"))
        if self.gpu:
            hit = [g for g in self.gpu if g in facts.gpus]
            checks.append((bool(hit), f"GPU vendor {hit[0] if hit else list(self.gpu)} present"))
        ok = bool(checks) and all(c for c, _ in checks)
        return ok, tuple(("" if c else "NOT ") + why for c, why in checks)

    @property
    def specificity(self) -> int:
        """How many criteria the profile states (more = more specific match)."""
        return sum(bool(x) for x in (self.arch, self.cpu, self.isa, self.cores, self.board, self.gpu))


@dataclass(frozen=True)
class DeviceProfile:
    """A target device: runtime preferences, workload and budgets, hardware peaks, detection."""

    name: str
    description: str
    runtime: Runtime
    workload: Workload
    hardware: Hardware
    detect: Detect = field(default_factory=Detect)
    path: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ProfileError("name", f"must be lower-case letters, digits, '.', '_' or '-', got {self.name!r}")
        if not isinstance(self.description, str):
            raise ProfileError("description", f"must be a string, got {self.description!r}")
        for key, typ in (("runtime", Runtime), ("workload", Workload), ("hardware", Hardware), ("detect", Detect)):
            if not isinstance(getattr(self, key), typ):
                raise ProfileError(key, f"must be a [{key}] table")

    def to_json(self) -> dict[str, Any]:
        """The profile as results files record it (plain JSON types)."""
        r, w, h, d = self.runtime, self.workload, self.hardware, self.detect
        return {
            "name": self.name,
            "description": self.description,
            "path": str(self.path) if self.path else None,
            "runtime": {
                "backends": list(r.backends),
                "precisions": list(r.precisions),
                "device": r.device,
                "threads": r.threads,
                "peers": list(r.peers),
            },
            "workload": {
                "resolutions": [str(x) for x in w.resolutions],
                "scales": list(w.scales),
                "latency_budget_ms": w.latency_budget_ms,
                "memory_budget_mb": w.memory_budget_mb,
                "datasets": list(w.datasets),
            },
            "hardware": {f.name: getattr(h, f.name) for f in fields(h)},
            "detect": {
                "arch": list(d.arch),
                "cpu": list(d.cpu),
                "isa": list(d.isa),
                "cores": list(d.cores) if d.cores else None,
                "board": list(d.board),
                "gpu": list(d.gpu),
            },
        }


T = TypeVar("T")


def _build(cls: Callable[..., T], table: Any, section: str) -> T:
    if not isinstance(table, Mapping):
        raise ProfileError(section, f"must be a table ([{section}]), got {type(table).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for key in table:
        if key not in known:
            raise ProfileError(f"{section}.{key}", f"unknown key (known: {', '.join(sorted(known))})")
    try:
        return cls(**table)
    except ProfileError as e:
        raise ProfileError(f"{section}.{e.key}", e.message) from None
    except TypeError as e:  # a required key is missing
        missing = re.findall(r"'(\w+)'", str(e))
        key = f"{section}.{missing[0]}" if missing else section
        raise ProfileError(key, "required key is missing") from None


_TOP = ("name", "description", "runtime", "workload", "hardware", "detect")
_SECTIONS: dict[str, type] = {"runtime": Runtime, "workload": Workload, "hardware": Hardware, "detect": Detect}


def profile_from_mapping(doc: Mapping[str, Any], path: Path | None = None) -> DeviceProfile:
    """Build a profile from parsed TOML (raises :class:`ProfileError` naming the key)."""
    for key in doc:
        if key not in _TOP:
            raise ProfileError(key, f"unknown key (known: {', '.join(_TOP)})")
    for key in ("name", "runtime", "workload", "hardware"):
        if key not in doc:
            raise ProfileError(key, "required key is missing")
    parts = {s: _build(cls, doc.get(s, {}), s) for s, cls in _SECTIONS.items()}
    profile = DeviceProfile(
        name=doc["name"],
        description=doc.get("description", ""),
        path=path,
        **parts,
    )
    if path is not None and path.stem != profile.name:
        raise ProfileError("name", f"{profile.name!r} differs from the file name {path.stem!r}")
    return profile


def load_profile_file(path: str | os.PathLike[str]) -> DeviceProfile:
    """Load and validate one profile file (one-line error naming the file and the key)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SrEdgeError(f"{p}: cannot read device profile ({one_line(str(e))})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SrEdgeError(f"{p}: not valid TOML ({one_line(str(e))})") from None
    try:
        return profile_from_mapping(doc, p)
    except ProfileError as e:
        raise SrEdgeError(f"{p}: {e.key}: {one_line(e.message)}") from None


def search_dirs() -> list[Path]:
    """Folders searched for profiles by name, in order."""
    dirs = [Path(p) for p in os.environ.get(DEVICES_ENV, "").split(os.pathsep) if p]
    return [*dirs, DEVICES_DIR]


def profile_paths() -> dict[str, Path]:
    """Every profile file found, by name (earlier folders win)."""
    found: dict[str, Path] = {}
    for folder in search_dirs():
        if folder.is_dir():
            for f in sorted(folder.glob("*.toml")):
                found.setdefault(f.stem, f)
    return found


def list_profiles() -> list[str]:
    """Names of the profiles found, sorted."""
    return sorted(profile_paths())


def load_profile(name_or_path: str | os.PathLike[str]) -> DeviceProfile:
    """A profile by name (``ci-cpu``) or by path to its ``.toml`` file."""
    text = os.fspath(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        if not Path(text).is_file():
            raise SrEdgeError(f"device profile {text} does not exist")
        return load_profile_file(text)
    paths = profile_paths()
    if text not in paths:
        have = ", ".join(sorted(paths)) or "none"
        raise SrEdgeError(f"unknown device {text!r}; known devices: {have} (or pass a path to a .toml profile)")
    return load_profile_file(paths[text])


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _gpu_vendors() -> tuple[str, ...]:
    vendors: set[str] = set()
    ids = {"0x10de": "nvidia", "0x8086": "intel", "0x1002": "amd"}
    drm = Path("/sys/class/drm")
    if drm.is_dir():
        for card in drm.glob("card[0-9]*"):
            vendor = _read(str(card / "device" / "vendor"))
            if vendor and vendor.strip() in ids:
                vendors.add(ids[vendor.strip()])
    if Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidia0").exists():
        vendors.add("nvidia")
    if Path("/etc/nv_tegra_release").exists() or Path("/dev/nvhost-ctrl-gpu").exists():
        vendors.add("nvidia")  # Jetson: the integrated GPU has no PCI vendor file
    return tuple(sorted(vendors))


def probe_machine() -> MachineFacts:
    """The facts detection uses, read from this machine (Linux /proc and /sys; platform elsewhere)."""
    from .provenance import cpu_model

    flags: frozenset[str] = frozenset()
    cpuinfo = _read("/proc/cpuinfo") or ""
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags = frozenset(line.split(":", 1)[1].split())
            break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    board = _read("/proc/device-tree/model")
    return MachineFacts(
        arch=platform.machine(),
        cpu=cpu_model(),
        cores=cores,
        isa=flags,
        board=board.strip("\x00\n ") if board else None,
        gpus=_gpu_vendors(),
    )


@dataclass(frozen=True)
class Detection:
    """The outcome of matching one profile against the machine."""

    profile: DeviceProfile
    matches: bool
    reasons: tuple[str, ...]


def detect(facts: MachineFacts | None = None, profiles: Sequence[DeviceProfile] | None = None) -> list[Detection]:
    """Every profile matched against the machine, best first (matching, then most specific)."""
    facts = facts or probe_machine()
    if profiles is None:
        profiles = [load_profile_file(p) for p in profile_paths().values()]
    results = []
    for prof in profiles:
        ok, reasons = prof.detect.match(facts)
        results.append(Detection(prof, ok, reasons))
    return sorted(results, key=lambda d: (not d.matches, -d.profile.detect.specificity, d.profile.name))
