"""The benchmark results file: one JSON document, rewritten atomically after every row.

Layout (``schema`` = ``"sr-edge-bench"``, ``schema_version`` = :data:`SCHEMA_VERSION`)::

    {
      "schema": "sr-edge-bench", "schema_version": 1,
      "created": ISO time, "updated": ISO time, "complete": bool,
      "machine": {...}, "libraries": {...}, "git": {"commit", "dirty"},
      "device": {the DeviceProfile as JSON},
      "settings": {the BenchSettings as JSON, datasets and resolutions resolved},
      "crops": {"folder": "<results stem>_crops", "image": name, "dataset": name,
                "box": [top, left, size], "hr": {"2": "hr_x2.png", ...}},
      "rows": [Row, ...]
    }

A row (:class:`Row`) is one contender: a bundle on a backend at a precision, or a peer
(bicubic, PyTorch eager on the bundle's parent weights, OpenCV dnn_superres). Its
``status`` is ``ok``, ``skipped`` (with the reason: backend not installed, no GPU ...)
or ``failed`` (with the one-line error). ``latency`` maps each input resolution
(``"640x360"``) to ``frame`` (uint8 image in, uint8 image out, colour handling
included), ``model`` (the network alone on an N x C x H x W float32 tensor; absent for
bicubic) and the compute figures derived from the model time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import SrEdgeError, one_line
from .timing import LatencyStats

SCHEMA = "sr-edge-bench"
SCHEMA_VERSION = 1
Status = Literal["ok", "skipped", "failed"]


@dataclass(frozen=True)
class Quality:
    """PSNR/SSIM-Y of one row on one dataset (means over ``images``)."""

    psnr_y: float
    ssim_y: float
    images: int
    per_image: Mapping[str, float] = field(default_factory=dict)  # image name -> PSNR-Y

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "psnr_y": self.psnr_y,
            "ssim_y": self.ssim_y,
            "images": self.images,
            "per_image": dict(self.per_image),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Quality:
        """Inverse of :meth:`to_json`."""
        return cls(float(d["psnr_y"]), float(d["ssim_y"]), int(d["images"]), dict(d.get("per_image", {})))


@dataclass(frozen=True)
class Timing:
    """Latency at one input resolution, and the compute rate the model time implies."""

    frame: LatencyStats
    model: LatencyStats | None = None
    gops_per_frame: float | None = None  # 2 x MACs of one frame, in G(FL)OP
    achieved_gops: float | None = None  # gops_per_frame / model p50
    efficiency: float | None = None  # achieved / the profile's peak at this precision
    stream_fps: float | None = None  # sustained over a stream of frames (timing.measure_stream)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "frame": self.frame.to_json(),
            "model": self.model.to_json() if self.model else None,
            "gops_per_frame": self.gops_per_frame,
            "achieved_gops": self.achieved_gops,
            "efficiency": self.efficiency,
            "stream_fps": self.stream_fps,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Timing:
        """Inverse of :meth:`to_json`."""
        return cls(
            frame=LatencyStats.from_json(d["frame"]),
            model=LatencyStats.from_json(d["model"]) if d.get("model") else None,
            gops_per_frame=d.get("gops_per_frame"),
            achieved_gops=d.get("achieved_gops"),
            efficiency=d.get("efficiency"),
            stream_fps=d.get("stream_fps"),
        )


@dataclass(frozen=True)
class Row:
    """One contender's results (see the module docstring)."""

    id: str
    variant: str
    model: str
    scale: int
    backend: str
    precision: str
    peer: str | None
    status: Status
    reason: str | None = None
    family: str = ""
    bundle: Mapping[str, Any] | None = None  # path, precision, onnx sha256, source record
    runtime: Mapping[str, Any] = field(default_factory=dict)  # device, threads, execution precision...
    build_s: float | None = None
    latency: Mapping[str, Timing] = field(default_factory=dict)
    quality: Mapping[str, Quality] = field(default_factory=dict)
    memory: Mapping[str, Any] | None = None
    compute: Mapping[str, Any] | None = None  # macs_per_lr_pixel, unit, peak_gops
    crop: str | None = None  # file name inside the crops folder
    seconds: float | None = None  # wall time the row took

    @property
    def ok(self) -> bool:
        """True when the row was measured."""
        return self.status == "ok"

    @property
    def label(self) -> str:
        """Short display name."""
        return self.id

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        d = asdict(self)
        d["latency"] = {k: v.to_json() for k, v in self.latency.items()}
        d["quality"] = {k: v.to_json() for k, v in self.quality.items()}
        d["bundle"] = dict(self.bundle) if self.bundle is not None else None
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Row:
        """Inverse of :meth:`to_json`."""
        names = cls.__dataclass_fields__
        kw = {k: v for k, v in d.items() if k in names}
        kw["latency"] = {k: Timing.from_json(v) for k, v in (d.get("latency") or {}).items()}
        kw["quality"] = {k: Quality.from_json(v) for k, v in (d.get("quality") or {}).items()}
        return cls(**kw)


@dataclass(frozen=True)
class Results:
    """A results document: header plus rows."""

    header: Mapping[str, Any]
    rows: tuple[Row, ...]
    path: Path | None = None

    @property
    def device(self) -> Mapping[str, Any]:
        """The device profile the run used (JSON form)."""
        return dict(self.header.get("device", {}))

    @property
    def settings(self) -> Mapping[str, Any]:
        """The exact settings of the run."""
        return dict(self.header.get("settings", {}))

    def row(self, row_id: str) -> Row | None:
        """The row with this id, if any."""
        return next((r for r in self.rows if r.id == row_id), None)

    def to_json(self) -> dict[str, Any]:
        """The whole document."""
        return {**self.header, "rows": [r.to_json() for r in self.rows]}


def load_results(path: str | os.PathLike[str], allow_empty: bool = False) -> Results:
    """Read a results file; one-line errors for a missing, empty, foreign or other-version file."""
    p = Path(path)
    if p.is_dir():
        raise SrEdgeError(f"{p} is a folder; pass the results JSON file in it (sr-edge bench --out FILE)")
    if not p.is_file():
        raise SrEdgeError(f"results file {p} does not exist")
    text = p.read_text(errors="replace")
    if not text.strip():
        raise SrEdgeError(f"{p}: results file is empty; run sr-edge bench --out {p} first")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SrEdgeError(f"{p}: not a JSON results file ({one_line(str(e))})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise SrEdgeError(f"{p}: not an sr-edge bench results file (schema {found!r}, expected {SCHEMA!r})")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SrEdgeError(
            f"{p}: results schema_version is {version!r}, not an integer as sr-edge writes it (this sr-edge reads "
            f"{SCHEMA_VERSION}); the file was edited or written by another tool: re-run sr-edge bench"
        )
    if version != SCHEMA_VERSION:
        raise SrEdgeError(
            f"{p}: results schema version {version!r}, but this sr-edge reads version {SCHEMA_VERSION}; "
            "re-run sr-edge bench with this version"
        )
    raw_rows = doc.get("rows")
    if not isinstance(raw_rows, list):
        raise SrEdgeError(f"{p}: results file has no 'rows' list")
    if not raw_rows and not allow_empty:
        raise SrEdgeError(f"{p}: results file holds no rows (the run stopped before its first row finished)")
    try:
        rows = tuple(Row.from_json(r) for r in raw_rows)
    except (KeyError, TypeError, ValueError) as e:
        raise SrEdgeError(f"{p}: malformed row in results file ({one_line(str(e))})") from None
    header = {k: v for k, v in doc.items() if k != "rows"}
    return Results(header, rows, p)


def row_id(variant: str, backend: str, precision: str) -> str:
    """The stable identity of a row across runs (what baselines and --resume match on)."""
    return f"{variant}@{backend}/{precision}"


def ok_rows(rows: Sequence[Row]) -> list[Row]:
    """The measured rows."""
    return [r for r in rows if r.ok]
