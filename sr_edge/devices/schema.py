"""The profile schema: frozen dataclasses validated on construction, and TOML tables -> profile.

Every table of a profile file is one dataclass here; :func:`profile_from_mapping` turns
parsed TOML into a :class:`DeviceProfile`, and an unknown key or a bad value raises a
:class:`ProfileError` naming the dotted key (``runtime.threads: must be a positive integer``).
:class:`MachineFacts` (what the probe reads off a machine) lives here too, because the
``[detect]`` table is matched against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from ..types import PRECISIONS, SCALES

# Deployment runtimes a profile may name (sr_edge.backends implements them) and the peers
# the benchmark measures beside them. Kept here as names only: loading a profile must not
# import any runtime.
BACKENDS: tuple[str, ...] = ("ort", "openvino", "tensorrt")
PEERS: tuple[str, ...] = ("bicubic", "torch", "opencv")
GPU_VENDORS: tuple[str, ...] = ("nvidia", "intel", "amd")
# Where a profile came from: a TOML file, or built from what this machine reports.
SOURCES: tuple[str, ...] = ("file", "detected")
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


# The figures of [hardware]: positive numbers, the first two required.
_FIGURES = (
    "peak_fp32_gflops",
    "memory_bandwidth_gbs",
    "peak_fp16_gflops",
    "peak_bf16_gflops",
    "peak_int8_gops",
    "memory_gb",
)


@dataclass(frozen=True)
class Hardware:
    """Peak figures: a vendor's (each profile cites its sources in a comment) or estimated.

    ``estimated`` marks figures derived by a rule (ISA features x clock x cores) rather than
    read off a vendor sheet; ``notes`` says how each was derived, so a results file and its
    report can show where a "% of peak" comes from.
    """

    peak_fp32_gflops: float
    memory_bandwidth_gbs: float
    peak_fp16_gflops: float | None = None
    peak_bf16_gflops: float | None = None
    peak_int8_gops: float | None = None
    memory_gb: float | None = None
    estimated: bool = False
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in _FIGURES:
            optional = name not in ("peak_fp32_gflops", "memory_bandwidth_gbs")
            object.__setattr__(self, name, _positive(name, getattr(self, name), float, allow_none=optional))
        if not isinstance(self.estimated, bool):
            raise ProfileError("estimated", f"must be true or false, got {self.estimated!r}")
        object.__setattr__(self, "notes", _str_tuple("notes", self.notes, empty_ok=True))

    def peak(self, precision: str) -> float | None:
        """Peak operations per second (G) for a precision, or None when none is known."""
        return {
            "fp32": self.peak_fp32_gflops,
            "fp16": self.peak_fp16_gflops,
            "bf16": self.peak_bf16_gflops,
            "int8": self.peak_int8_gops,
        }.get(precision)


@dataclass(frozen=True)
class MachineFacts:
    """What detection looks at on the machine it runs on.

    The first six fields are what ``[detect]`` tables match; the rest feed the profile that
    is built when none matches (absent where the platform does not report them).
    """

    arch: str
    cpu: str
    cores: int  # logical CPUs this process may use (its affinity), not the machine's
    isa: frozenset[str]
    board: str | None
    gpus: tuple[str, ...]
    vendor: str = ""  # /proc/cpuinfo vendor_id: GenuineIntel, AuthenticAMD
    family: int | None = None  # /proc/cpuinfo "cpu family" (AMD Zen 4 is 25, Zen 5 is 26)
    model: int | None = None
    physical_cores: int | None = None  # distinct cores among the usable CPUs (SMT siblings share units)
    clock_ghz: float | None = None
    clock_source: str = ""  # where clock_ghz was read, for the estimate's notes
    memory_gb: float | None = None  # MemTotal

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
    """A target device: runtime preferences, workload and budgets, hardware peaks, detection.

    ``source`` is ``"file"`` for a TOML profile and ``"detected"`` for one built from what
    this machine reports (see :func:`sr_edge.devices.profile_from_machine`).
    """

    name: str
    description: str
    runtime: Runtime
    workload: Workload
    hardware: Hardware
    detect: Detect = field(default_factory=Detect)
    path: Path | None = None
    source: str = "file"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ProfileError("name", f"must be lower-case letters, digits, '.', '_' or '-', got {self.name!r}")
        if not isinstance(self.description, str):
            raise ProfileError("description", f"must be a string, got {self.description!r}")
        for key, typ in (("runtime", Runtime), ("workload", Workload), ("hardware", Hardware), ("detect", Detect)):
            if not isinstance(getattr(self, key), typ):
                raise ProfileError(key, f"must be a [{key}] table")
        if self.source not in SOURCES:
            raise ProfileError("source", f"must be one of {', '.join(SOURCES)}, got {self.source!r}")

    @property
    def estimated(self) -> bool:
        """True when the hardware figures are estimates, not a vendor's."""
        return self.hardware.estimated

    def to_json(self) -> dict[str, Any]:
        """The profile as results files record it (plain JSON types: lists, not tuples)."""
        r, w, h, d = self.runtime, self.workload, self.hardware, self.detect
        return {
            "name": self.name,
            "description": self.description,
            "path": str(self.path) if self.path else None,
            "source": self.source,
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
            "hardware": {
                **{name: getattr(h, name) for name in _FIGURES},
                "estimated": h.estimated,
                "notes": list(h.notes),
            },
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


# `source` and `path` are not keys: a file's profile is "file" and knows its own path.
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
