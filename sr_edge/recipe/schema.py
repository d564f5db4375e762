"""The recipe of ``sr-edge run``: one TOML file, validated as a whole before any work starts.

Every table is a frozen dataclass; an unknown key, a wrong type or an out-of-range value is
a one-line :class:`~sr_edge.errors.SrEdgeError` naming the file and the dotted key
(``recipe.toml: prune.ratio: must be in (0, 1), got -0.5``). The default recipe
(``default.toml`` beside this file) is the example the README documents.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import SrEdgeError
from ..types import PRECISIONS, SCALES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the backport
    import tomli as tomllib

DEFAULT_RECIPE = Path(__file__).resolve().parent / "default.toml"
BACKENDS = ("ort", "openvino", "tensorrt")
PEERS = ("bicubic", "torch", "opencv")


class RecipeError(ValueError):
    """A bad value, with the dotted key it concerns."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")


def _strings(key: str, value: Any, allowed: tuple[str, ...] | None = None, empty_ok: bool = False) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise RecipeError(key, f"must be a list of strings, got {value!r}")
    if not value and not empty_ok:
        raise RecipeError(key, "must not be empty")
    for item in value:
        if not isinstance(item, str) or not item:
            raise RecipeError(key, f"must hold non-empty strings, got {item!r}")
        if allowed is not None and item not in allowed:
            raise RecipeError(key, f"{item!r} is not one of {', '.join(allowed)}")
    if len(set(value)) != len(value):
        raise RecipeError(key, "lists a value twice")
    return tuple(value)


def _positive_int(key: str, value: Any, zero_ok: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero_ok else 1):
        raise RecipeError(key, f"must be a {'non-negative' if zero_ok else 'positive'} integer, got {value!r}")
    return value


def _positive_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise RecipeError(key, f"must be a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ModelsSection:
    """What is measured: shipped models (their bundles) at these scales."""

    names: tuple[str, ...] = ("ecbsr-m4c16", "fsrcnn", "espcn")
    scales: tuple[int, ...] = (2,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", _strings("models.names", self.names))
        if not isinstance(self.scales, (list, tuple)) or not self.scales:
            raise RecipeError("models.scales", f"must be a non-empty list of scales, got {self.scales!r}")
        for s in self.scales:
            if isinstance(s, bool) or s not in SCALES:
                raise RecipeError("models.scales", f"{s!r} is not one of {', '.join(map(str, SCALES))}")
        object.__setattr__(self, "scales", tuple(self.scales))


@dataclass(frozen=True)
class PruneSection:
    """A structured-pruning step: each model pruned by ``ratio`` of its MACs, then fine-tuned."""

    models: tuple[str, ...] = ()
    ratio: float = 0.5
    steps: int = 200
    batch_size: int = 16
    patch_size: int = 32
    distill: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", _strings("prune.models", self.models, empty_ok=True))
        r = self.ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < 1:
            raise RecipeError("prune.ratio", f"must be in (0, 1), got {r!r}")
        _positive_int("prune.steps", self.steps, zero_ok=True)
        _positive_int("prune.batch_size", self.batch_size)
        _positive_int("prune.patch_size", self.patch_size)
        if not isinstance(self.distill, bool):
            raise RecipeError("prune.distill", f"must be true or false, got {self.distill!r}")


@dataclass(frozen=True)
class QuantizeSection:
    """An int8 step: each model quantised (QAT fine-tune of ``steps``, or PTQ with 0 steps)."""

    models: tuple[str, ...] = ()
    mode: Literal["qat", "ptq"] = "qat"
    steps: int = 200
    calib_images: int = 16
    batch_size: int = 16
    patch_size: int = 40

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", _strings("quantize.models", self.models, empty_ok=True))
        if self.mode not in ("qat", "ptq"):
            raise RecipeError("quantize.mode", f"must be qat or ptq, got {self.mode!r}")
        _positive_int("quantize.steps", self.steps, zero_ok=True)
        _positive_int("quantize.calib_images", self.calib_images)
        _positive_int("quantize.batch_size", self.batch_size)
        _positive_int("quantize.patch_size", self.patch_size)


@dataclass(frozen=True)
class BenchSection:
    """The measurement on this machine: backends x precisions, peers, datasets, input size."""

    backends: tuple[str, ...] = ("ort", "openvino")
    precisions: tuple[str, ...] = ("fp32", "bf16", "int8")
    peers: tuple[str, ...] = PEERS
    datasets: tuple[str, ...] = ("Set5", "Set14")
    resolution: str = "640x360"
    quick: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "backends", _strings("bench.backends", self.backends, BACKENDS))
        object.__setattr__(self, "precisions", _strings("bench.precisions", self.precisions, PRECISIONS))
        object.__setattr__(self, "peers", _strings("bench.peers", self.peers, PEERS, empty_ok=True))
        object.__setattr__(self, "datasets", _strings("bench.datasets", self.datasets, empty_ok=True))
        from ..devices import Resolution

        try:
            Resolution.parse(self.resolution, "bench.resolution")
        except (ValueError, TypeError, AttributeError):
            raise RecipeError("bench.resolution", f"must look like 640x360, got {self.resolution!r}") from None
        if not isinstance(self.quick, bool):
            raise RecipeError("bench.quick", f"must be true or false, got {self.quick!r}")


@dataclass(frozen=True)
class SelectSection:
    """The recommendation: for each device profile and budget, the pick (measured here, estimated elsewhere)."""

    devices: tuple[str, ...] = ("detected", "jetson-orin-nano", "intel-laptop-cpu")
    budgets_ms: tuple[float, ...] = (33.3, 100.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "devices", _strings("select.devices", self.devices))
        if not isinstance(self.budgets_ms, (list, tuple)) or not self.budgets_ms:
            raise RecipeError("select.budgets_ms", f"must be a non-empty list of milliseconds, got {self.budgets_ms!r}")
        object.__setattr__(self, "budgets_ms", tuple(_positive_float("select.budgets_ms", b) for b in self.budgets_ms))


@dataclass(frozen=True)
class Recipe:
    """A whole run of the main job (see ``default.toml``)."""

    models: ModelsSection = field(default_factory=ModelsSection)
    prune: PruneSection = field(default_factory=PruneSection)
    quantize: QuantizeSection = field(default_factory=QuantizeSection)
    bench: BenchSection = field(default_factory=BenchSection)
    select: SelectSection = field(default_factory=SelectSection)
    threads: int | None = None  # torch / runtime threads (None: the runtimes' defaults)
    data_root: str | None = None  # where datasets are looked up first
    source: str = "<defaults>"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, without where it was read from (part of every stage's cache key)."""
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


_SECTIONS = {
    "models": ModelsSection,
    "prune": PruneSection,
    "quantize": QuantizeSection,
    "bench": BenchSection,
    "select": SelectSection,
}


def _section(cls: type, key: str, table: Any) -> Any:
    if not isinstance(table, dict):
        raise RecipeError(key, f"must be a table, got {table!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise RecipeError(f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(names))})")
    return cls(**table)


def recipe_from_dict(doc: dict[str, Any], source: str = "<dict>") -> Recipe:
    """A validated recipe from a parsed TOML document."""
    try:
        unknown = sorted(set(doc) - set(_SECTIONS) - {"threads", "data_root"})
        if unknown:
            raise RecipeError(unknown[0], f"unknown key (known: {', '.join([*_SECTIONS, 'threads', 'data_root'])})")
        sections = {k: _section(cls, k, doc[k]) for k, cls in _SECTIONS.items() if k in doc}
        threads = doc.get("threads")
        if threads is not None:
            _positive_int("threads", threads)
        data_root = doc.get("data_root")
        if data_root is not None and (not isinstance(data_root, str) or not Path(data_root).is_dir()):
            raise RecipeError("data_root", f"must name an existing folder, got {data_root!r}")
        recipe = Recipe(**sections, threads=threads, data_root=data_root, source=source)
    except RecipeError as e:
        raise SrEdgeError(f"{source}: {e}") from None
    except TypeError as e:  # a value of the wrong shape reaching a dataclass
        raise SrEdgeError(f"{source}: {e}") from None
    return recipe


def load_recipe(path: str | Path | None = None) -> Recipe:
    """The recipe in ``path`` (None: the embedded default)."""
    file = Path(path) if path is not None else DEFAULT_RECIPE
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SrEdgeError(f"{file}: no such recipe file") from None
    except IsADirectoryError:
        raise SrEdgeError(f"{file}: is a folder; a recipe is a .toml file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SrEdgeError(f"{file}: unreadable recipe ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise SrEdgeError(f"{file}: not valid TOML ({e})") from None
    return recipe_from_dict(doc, str(file) if path is not None else "default recipe")
