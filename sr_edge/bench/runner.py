"""``benchmark(profile, settings)``: every variant x backend x precision, plus the peers.

The matrix, per scale of the profile that a bundle exists for (every scale when there is
no bundle): bicubic, OpenCV dnn_superres (ESPCN, FSRCNN, FSRCNN-small), then for each
bundle PyTorch eager on its parent weights (float bundles) and each deployment backend
of the profile at each of its precisions the bundle can run at (an int8 QDQ bundle runs
as int8; a float bundle at the profile's float precisions).

Each row: build the session (timed; peak RSS from here on), latency at every profile
resolution (end-to-end frame and network-only, :mod:`sr_edge.bench.timing`), then
quality through the same session on each dataset, then one crop for the visual sheet.
After each row the results file is rewritten atomically, so an interrupted run keeps
every finished row; ``resume=True`` continues it (rows that failed are retried).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import Dataset, check_data_root, resolve_dataset
from ..devices import PEERS, DeviceProfile, Resolution
from ..errors import DatasetNotFoundError, SrEdgeError, one_line
from ..paths import bundles_dir, shared_dir
from ..provenance import git_info, library_versions, machine_info, now_utc, write_json
from . import heap
from .contenders import (
    OPENCV_MODELS,
    BicubicContender,
    BundleContender,
    Contender,
    Deployed,
    NotNative,
    OpenCVContender,
    options_for,
)
from .memory import MemoryProbe, MemoryStats
from .results import SCHEMA, SCHEMA_VERSION, Quality, Results, Row, Timing, load_results
from .timing import LatencyPlan, measure_latency

DEFAULT_BUNDLES = bundles_dir()
OPENCV_ENV = "SR_EDGE_OPENCV_MODELS"
DEFAULT_OPENCV_DIR = shared_dir() / "peers" / "opencv_dnn_superres"
_LIBRARIES = (
    "sr-edge",
    "numpy",
    "onnx",
    "onnxruntime",
    "openvino",
    "tensorrt",
    "torch",
    "opencv-contrib-python-headless",
)
_CROP_ALIGN = 12  # crop boxes on multiples of 12 sit on the LR grid at x2, x3 and x4


@dataclass(frozen=True)
class BenchSettings:
    """What to measure and how; ``None`` fields take the device profile's values."""

    models: tuple[str, ...] = ()  # bundle model names or variant paths (``espcn``, ``espcn/x2``); empty = all
    bundles_dir: Path = DEFAULT_BUNDLES
    datasets: tuple[str, ...] | None = None
    data_root: str | None = None
    resolutions: tuple[Resolution, ...] | None = None
    scales: tuple[int, ...] | None = None
    backends: tuple[str, ...] | None = None
    precisions: tuple[str, ...] | None = None
    peers: tuple[str, ...] | None = None
    threads: int | None = None
    latency: LatencyPlan = field(default_factory=LatencyPlan)
    quality: bool = True
    crops: bool = True
    crop_size: int = 96
    opencv_models: tuple[str, ...] = tuple(OPENCV_MODELS)
    opencv_dir: Path | None = None  # None: $SR_EDGE_OPENCV_MODELS, else ../shared/peers/opencv_dnn_superres
    heap: str = "steady"  # "steady": freed memory stays mapped between runs (see heap.py); "default"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bundles_dir", Path(self.bundles_dir))
        check_data_root(self.data_root)  # a wrong root must not fall back to the samples in silence
        if self.peers is not None:
            bad = [p for p in self.peers if p not in PEERS]
            if bad:
                raise SrEdgeError(f"unknown peer {bad[0]!r}; peers are {', '.join(PEERS)}")
        for name in self.opencv_models:
            if name not in OPENCV_MODELS:
                raise SrEdgeError(f"unknown OpenCV model {name!r}; known: {', '.join(OPENCV_MODELS)}")
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise SrEdgeError(f"threads must be a positive integer, got {self.threads!r}")
        if self.heap not in heap.HEAP_MODES:
            raise SrEdgeError(f"heap must be one of {', '.join(heap.HEAP_MODES)}, got {self.heap!r}")
        if isinstance(self.crop_size, bool) or self.crop_size < _CROP_ALIGN or self.crop_size % _CROP_ALIGN:
            raise SrEdgeError(f"crop size must be a positive multiple of {_CROP_ALIGN}, got {self.crop_size!r}")

    def opencv_models_dir(self) -> Path:
        """Where OpenCV's ``.pb`` graphs are read from."""
        if self.opencv_dir is not None:
            return Path(self.opencv_dir)
        env = os.environ.get(OPENCV_ENV)
        return Path(env) if env else DEFAULT_OPENCV_DIR


@dataclass(frozen=True)
class Plan:
    """The resolved run: concrete datasets, resolutions and the contenders in order."""

    profile: DeviceProfile
    settings: BenchSettings
    datasets: tuple[Dataset, ...]
    datasets_missing: tuple[str, ...]
    resolutions: tuple[Resolution, ...]
    threads: int | None
    contenders: tuple[Contender, ...]
    bundle_errors: tuple[str, ...]

    def settings_json(self) -> dict[str, Any]:
        """The exact settings, as the results file records them."""
        s = self.settings
        return {
            "models": list(s.models),
            "bundles_dir": str(s.bundles_dir),
            "datasets": [d.name for d in self.datasets],
            "datasets_missing": list(self.datasets_missing),
            "dataset_paths": {d.name: str(d.root) for d in self.datasets},
            "resolutions": [str(r) for r in self.resolutions],
            "threads": self.threads,
            "latency": dataclasses.asdict(s.latency),
            "quality": s.quality,
            "crops": s.crops,
            "crop_size": s.crop_size,
            "opencv_dir": str(s.opencv_models_dir()),
            "heap": heap.describe(s.heap),
        }

    def fingerprint(self) -> dict[str, Any]:
        """What must match for ``resume`` to append to an earlier file."""
        device = {k: v for k, v in self.profile.to_json().items() if k != "path"}
        settings = self.settings_json()
        keep = ("datasets", "resolutions", "threads", "latency", "quality", "crop_size", "heap")
        return {"device": device, **{k: settings[k] for k in keep}}


def _datasets(names: Sequence[str], data_root: str | None, named: bool) -> tuple[tuple[Dataset, ...], tuple[str, ...]]:
    """The datasets found; a profile's missing ones are listed, one the user ``named`` is an error."""
    found, missing = [], []
    for name in names:
        try:
            found.append(resolve_dataset(name, data_root))
        except DatasetNotFoundError:  # one found but broken (no images) is an error either way
            if named:
                raise
            missing.append(name)
    if not found:  # the embedded default: sr-edge measures quality even with no dataset on disk
        found.append(resolve_dataset(None))
    return tuple(found), tuple(missing)


def _matches(filters: Sequence[str], model: str, variant: str) -> bool:
    return not filters or any(f in (model, variant) or variant.startswith(f.rstrip("/") + "/") for f in filters)


def _shape_range(datasets: Sequence[Dataset], resolutions: Sequence[Resolution], scale: int) -> Any:
    """Input bounds covering every LR image of the datasets and every frame (for engines that fix them)."""
    from PIL import Image

    from ..backends import ShapeRange

    side = max(max(r.width, r.height) for r in resolutions)
    low = 8
    for ds in datasets:
        for f in ds.files:
            with Image.open(f) as im:
                w, h = im.size
            side = max(side, -(-w // scale), -(-h // scale))
            low = min(low, w // scale, h // scale)
    first = resolutions[0]
    return ShapeRange(min=(1, max(1, low), max(1, low)), opt=(1, first.height, first.width), max=(1, side, side))


def plan(profile: DeviceProfile, settings: BenchSettings | None = None) -> Plan:
    """Resolve the settings against the profile and list the contenders, in run order."""
    from ..backends import PRECISIONS, get_backend
    from ..backends.base import precision_matches_bundle
    from ..export.bundle import find_bundles, read_bundle

    s = settings or BenchSettings()
    rt, wl = profile.runtime, profile.workload
    scales = tuple(s.scales or wl.scales)
    backends = tuple(s.backends or rt.backends)
    precisions = tuple(s.precisions or rt.precisions)
    peers = tuple(rt.peers if s.peers is None else s.peers)
    threads = s.threads if s.threads is not None else rt.threads
    resolutions = tuple(s.resolutions or wl.resolutions)
    names = wl.datasets if s.datasets is None else s.datasets
    datasets, missing = _datasets(names, s.data_root, named=s.datasets is not None)
    for name in backends:
        get_backend(name)  # one-line error for an unknown name
    for p in precisions:
        if p not in PRECISIONS:
            raise SrEdgeError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")

    bundles, errors = [], []
    for folder in find_bundles(s.bundles_dir):
        variant = folder.relative_to(s.bundles_dir).as_posix()
        try:
            b = read_bundle(folder)
        except SrEdgeError as e:
            errors.append(f"{variant}: {one_line(str(e))}")
            continue
        if b.scale in scales and _matches(s.models, b.model, variant):
            bundles.append((variant, b))
    if s.models and not bundles:
        raise SrEdgeError(
            f"no bundle under {s.bundles_dir} matches --models {' '.join(s.models)} at scale(s) "
            f"{', '.join(map(str, scales))}; export one with sr-edge export"
        )

    torch_device = rt.device if rt.device.startswith("cuda") else "cpu"
    ranges: dict[int, Any] = {}
    contenders: list[Contender] = []
    peer_scales = sorted({b.scale for _, b in bundles}) if bundles else list(scales)
    for scale in sorted(set(scales)):
        if scale in peer_scales:
            if "bicubic" in peers:
                contenders.append(BicubicContender(scale))
            if "opencv" in peers:
                contenders.extend(OpenCVContender(n, scale, s.opencv_models_dir(), threads) for n in s.opencv_models)
        seen_sources: set[str] = set()
        for variant, b in bundles:
            if b.scale != scale:
                continue
            source = b.source
            key = str(source.get("checkpoint_sha256") or b.path)
            if "torch" in peers and b.precision != "int8" and key not in seen_sources:
                seen_sources.add(key)
                contenders.append(
                    BundleContender(
                        b.path, variant, b.model, b.family, scale, "torch", "fp32", torch_device,
                        options_for("torch", threads, None), b.manifest, peer="torch",
                    )
                )  # fmt: skip
            for backend_name in backends:
                backend = get_backend(backend_name)
                for precision in precisions:
                    try:  # the backends' own rule: int8 needs a QDQ bundle and a QDQ bundle runs as int8
                        precision_matches_bundle(backend_name, b, precision, backend.precisions)  # type: ignore[arg-type]
                    except SrEdgeError:
                        continue  # a pairing the backend or the bundle cannot run: not a row
                    needs_range = "profile" in {f.name for f in dataclasses.fields(backend.options_type)}
                    if needs_range and scale not in ranges:
                        ranges[scale] = _shape_range(datasets, resolutions, scale)
                    opts = options_for(backend_name, threads, ranges.get(scale) if needs_range else None)
                    contenders.append(
                        BundleContender(
                            b.path, variant, b.model, b.family, scale, backend_name, precision, rt.device, opts,
                            b.manifest,
                        )
                    )  # fmt: skip
    if not contenders:
        raise SrEdgeError(
            f"nothing to measure on {profile.name}: no bundle under {s.bundles_dir} at scale(s) "
            f"{', '.join(map(str, scales))} and no peers"
        )
    ids = [c.id for c in contenders]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SrEdgeError(f"two rows share the id {dupes[0]!r}; give the bundles distinct folder names")
    return Plan(profile, s, datasets, missing, resolutions, threads, tuple(contenders), tuple(errors))


# --- crops for the visual comparison sheet -------------------------------------------


@dataclass(frozen=True)
class CropSpec:
    """Which image and which HR box (top, left, size; multiples of 12) the sheet shows."""

    dataset: str
    image: str
    path: Path
    top: int
    left: int
    size: int


def _detail(hr: np.ndarray) -> np.ndarray:
    grey = hr.astype(np.float64).mean(axis=-1) if hr.ndim == 3 else hr.astype(np.float64)
    gy, gx = np.gradient(grey)
    return np.hypot(gx, gy)


def choose_crop(dataset: Dataset, size: int) -> CropSpec | None:
    """The most detailed ``size`` x ``size`` box (smaller if no image is that big) of the
    dataset's most detailed image.

    Detail = mean gradient magnitude: the regions where SR methods differ most.
    """
    from ..evaluate import load_hr

    images = [(path, load_hr(path)) for path in dataset.files]
    fits = [min(hr.shape[:2]) // _CROP_ALIGN * _CROP_ALIGN for _, hr in images]
    size = min(size, max(fits, default=0))  # small datasets: the largest aligned box that fits somewhere
    if size < _CROP_ALIGN:
        return None
    best: tuple[float, CropSpec] | None = None
    for path, hr in images:
        h, w = hr.shape[:2]
        h, w = h - h % _CROP_ALIGN, w - w % _CROP_ALIGN
        if h < size or w < size:
            continue
        energy = _detail(hr[:h, :w])
        integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        tops = np.arange(0, h - size + 1, _CROP_ALIGN)
        lefts = np.arange(0, w - size + 1, _CROP_ALIGN)
        t, left = np.meshgrid(tops, lefts, indexing="ij")
        sums = integral[t + size, left + size] - integral[t, left + size] - integral[t + size, left] + integral[t, left]
        i = np.unravel_index(int(np.argmax(sums)), sums.shape)
        score = float(energy.mean())
        spec = CropSpec(dataset.name, path.stem, path, int(tops[i[0]]), int(lefts[i[1]]), size)
        if best is None or score > best[0]:
            best = (score, spec)
    return best[1] if best else None


def _crop_lr(spec: CropSpec, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR crop, the full LR image) for a scale, under the evaluation protocol."""
    from ..evaluate import degrade, load_hr

    hr, lr = degrade(load_hr(spec.path), scale, spec.image)
    return hr[spec.top : spec.top + spec.size, spec.left : spec.left + spec.size], lr


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# --- running rows -------------------------------------------------------------------


def _timings(
    deployed: Deployed,
    resolutions: Sequence[Resolution],
    scale: int,
    latency: LatencyPlan,
    peak: float | None,
    probe: MemoryProbe,
) -> dict[str, Timing]:
    rng = np.random.default_rng(0)
    out: dict[str, Timing] = {}
    for res in resolutions:
        frame = rng.integers(0, 256, (res.height, res.width, 3), dtype=np.uint8)
        frame_stats = measure_latency(lambda f=frame: deployed.upscaler(f), latency)  # type: ignore[misc]
        probe.sample()
        model_stats = None
        gops = achieved = efficiency = None
        if deployed.model_fn is not None:
            x = rng.random((1, deployed.channels, res.height, res.width), dtype=np.float32)
            # The frame runs just ran this network at this size: one warm-up run is enough.
            model_stats = measure_latency(lambda x=x, fn=deployed.model_fn: fn(x), latency.warmed())  # type: ignore[misc]
            probe.sample()
            if deployed.macs_per_lr_pixel:
                gops = 2.0 * deployed.macs_per_lr_pixel * res.width * res.height / 1e9
                achieved = gops / (model_stats.p50_ms / 1000.0)
                efficiency = achieved / peak if peak else None
        out[str(res)] = Timing(
            frame_stats,
            model_stats,
            round(gops, 4) if gops is not None else None,
            round(achieved, 2) if achieved is not None else None,
            round(efficiency, 4) if efficiency is not None else None,
        )
    return out


def _quality(deployed: Deployed, datasets: Sequence[Dataset]) -> dict[str, Quality]:
    from ..evaluate import evaluate

    out = {}
    for ds in datasets:
        r = evaluate(deployed.upscaler, ds)
        out[ds.name] = Quality(
            round(r.psnr_y, 4), round(r.ssim_y, 5), len(r.images), {i.name: round(i.psnr_y, 4) for i in r.images}
        )
    return out


def _import_runtimes(plan_: Plan, kept: Mapping[str, Row]) -> None:
    """Import every runtime the remaining rows need, before the first row.

    A Ctrl-C that lands while an extension package is first imported is not a clean
    ``KeyboardInterrupt``: onnxruntime (through numpy) turns it into an ImportError, which
    mid-run would skip a row as "not installed" and end the run as complete, and onnx's
    protobuf module can crash the process. Importing up front leaves only pure-Python
    work and runtime calls in the window a user interrupts.
    """
    todo = [c for c in plan_.contenders if c.id not in kept]
    for c in todo:
        c.skip_reason()  # imports the backend's runtime
    if any(c.peer is None or c.peer == "torch" for c in todo):
        import onnx  # noqa: F401  (MAC counting of every bundle row)


@contextlib.contextmanager
def _measured(
    c: Contender, plan_: Plan, peak: float | None, latency: LatencyPlan | None = None
) -> Iterator[tuple[Deployed, dict[str, Timing], MemoryStats]]:
    """Open ``c``'s session and time it at every resolution; the session closes on exit.

    Memory is probed from before the open, so session build memory counts.
    """
    deployed: Deployed | None = None
    if plan_.settings.heap == "steady":
        heap.release()  # what earlier rows freed is not this row's memory
    try:
        with MemoryProbe() as probe:
            deployed = c.open()
            probe.sample()
            timings = _timings(deployed, plan_.resolutions, c.scale, latency or plan_.settings.latency, peak, probe)
            memory = probe.stats()
        yield deployed, timings, memory
    finally:
        if deployed is not None:
            deployed.close()


def _rounds_done(row: Row) -> int:
    timings = list((row.latency or {}).values())
    if not timings:
        return 0
    return min(len(t.frame.round_p50_ms) or 1 for t in timings)


def _another_round(row: Row, c: Contender, plan_: Plan) -> Row:
    """Time ``row`` once more and keep, per resolution and kind, the round with the lower p50."""
    peak = plan_.profile.hardware.peak(c.precision)
    # A reopened session needs one untimed run (first-run set-up at this size), not the
    # first round's full warm-up: that saves about a third of each later round.
    try:
        with _measured(c, plan_, peak, plan_.settings.latency.warmed()) as (_, again, _):
            pass
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:  # the first round stands; a flaky reopen must not lose a finished row
        return row
    merged: dict[str, Timing] = {}
    for res, t in (row.latency or {}).items():
        new = again.get(res)
        if new is None:
            merged[res] = t
            continue
        model = t.model.best_with(new.model) if t.model is not None and new.model is not None else t.model
        achieved = efficiency = None
        if model is not None and t.gops_per_frame:
            achieved = round(t.gops_per_frame / (model.p50_ms / 1000.0), 2)
            efficiency = round(achieved / peak, 4) if peak else None
        merged[res] = dataclasses.replace(
            t, frame=t.frame.best_with(new.frame), model=model, achieved_gops=achieved, efficiency=efficiency
        )
    return dataclasses.replace(row, latency=merged)


def run_row(
    c: Contender,
    plan_: Plan,
    crops: tuple[CropSpec, Path] | None = None,
) -> Row:
    """Measure one contender; errors become a ``failed`` row with a one-line reason."""
    started = time.perf_counter()
    base: dict[str, Any] = {
        "id": c.id,
        "variant": c.variant,
        "model": c.model,
        "family": c.family,
        "scale": c.scale,
        "backend": c.backend,
        "precision": c.precision,
        "peer": c.peer,
    }
    try:
        base["bundle"] = c.bundle_info()
    except Exception as e:  # a missing file is reported by skip_reason / open
        base["bundle"] = {"error": one_line(str(e))}
    reason = c.skip_reason()
    if reason is not None:
        return Row(**base, status="skipped", reason=reason, seconds=round(time.perf_counter() - started, 3))
    peak = plan_.profile.hardware.peak(c.precision)
    try:
        with _measured(c, plan_, peak) as (deployed, timings, memory):
            quality = _quality(deployed, plan_.datasets) if plan_.settings.quality else {}
            crop_name = None
            if crops is not None:
                spec, folder = crops
                _, lr = _crop_lr(spec, c.scale)
                sr = deployed.upscaler(lr)[spec.top : spec.top + spec.size, spec.left : spec.left + spec.size]
                from ..data.io import write_image

                crop_name = f"{_safe(c.id)}.png"
                write_image(folder / crop_name, sr)
    except NotNative as e:
        return Row(**base, status="skipped", reason=one_line(str(e)), seconds=round(time.perf_counter() - started, 3))
    except SrEdgeError as e:
        return Row(**base, status="failed", reason=one_line(str(e)), seconds=round(time.perf_counter() - started, 3))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # one runtime's bug must not end the whole matrix
        reason = f"{type(e).__name__}: {one_line(str(e))}"[:500]
        return Row(**base, status="failed", reason=reason, seconds=round(time.perf_counter() - started, 3))
    compute = {
        "macs_per_lr_pixel": deployed.macs_per_lr_pixel,
        "unit": "GOP/s" if c.precision == "int8" else "GFLOP/s",
        "peak_gops": peak,
    }
    return Row(
        **base,
        status="ok",
        runtime=deployed.runtime,
        build_s=round(deployed.build_s, 4),
        latency=timings,
        quality=quality,
        memory=memory.to_json(),
        compute=compute,
        crop=crop_name,
        seconds=round(time.perf_counter() - started, 3),
    )


def crops_folder(out: Path) -> Path:
    """The folder beside a results file that holds its crops."""
    return out.with_name(f"{out.stem}_crops")


def _header(plan_: Plan, created: str, crops: Mapping[str, Any] | None) -> dict[str, Any]:
    import importlib.metadata

    libs = library_versions(_LIBRARIES)
    for dist in ("opencv-python-headless", "opencv-python", "opencv-contrib-python"):
        try:
            libs.setdefault("opencv", importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": created,
        "updated": now_utc(),
        "complete": False,
        "machine": machine_info(),
        "libraries": libs,
        "git": git_info(),
        "device": plan_.profile.to_json(),
        "device_fit": device_fit(plan_.profile),
        "settings": plan_.settings_json(),
        "fingerprint": plan_.fingerprint(),
        "bundle_errors": list(plan_.bundle_errors),
        "crops": dict(crops) if crops else None,
    }


def device_fit(profile: DeviceProfile) -> dict[str, Any] | None:
    """Whether this machine fits ``profile``'s ``[detect]`` criteria, with the reasons (None: it states none)."""
    from ..devices import detect

    if not profile.detect.specificity:
        return None
    found = detect(profiles=[profile])[0]
    return {"matches": found.matches, "reasons": list(found.reasons)}


@contextlib.contextmanager
def _ctrl_c_seen() -> Iterator[Callable[[], bool]]:
    """Ctrl-C as usual (``KeyboardInterrupt``), also remembered.

    A guard: a runtime that is inside its own code when the signal lands could turn the
    ``KeyboardInterrupt`` into its own exception (an ImportError, as onnxruntime's imports
    did, which is why runtimes are imported up front; never seen at session build or run
    time), which a row would then record as failed or skipped. The runner asks this flag
    after every row, so such a Ctrl-C would still end the run, and that row is not kept.
    """
    hits: list[int] = []
    if (
        threading.current_thread() is not threading.main_thread()  # handlers belong to the main thread
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # ignored (nohup) or the caller's own
    ):
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        hits.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hits)
    finally:
        signal.signal(signal.SIGINT, previous)


def benchmark(
    profile: DeviceProfile,
    settings: BenchSettings | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = False,
    on_row: Callable[[Row], None] | None = None,
) -> Results:
    """Run the matrix for ``profile``; with ``out``, write the results file after every row.

    ``resume``: continue the run recorded in ``out`` (same device and settings), keeping
    its ``ok`` and ``skipped`` rows and retrying the others. Interrupting (Ctrl-C) leaves
    ``out`` holding every finished row with ``complete: false``.
    """
    from tqdm import tqdm

    plan_ = plan(profile, settings)
    out_path = Path(out) if out is not None else None
    kept: dict[str, Row] = {}
    created = now_utc()
    if out_path is not None and out_path.exists() and out_path.stat().st_size > 0:
        if not resume:
            raise SrEdgeError(f"{out_path} already exists; pass --resume to continue it or choose another --out")
        earlier = load_results(out_path, allow_empty=True)
        if earlier.header.get("fingerprint") != plan_.fingerprint():
            raise SrEdgeError(
                f"{out_path} was measured with another device profile or settings; "
                "re-run without --resume into a new --out"
            )
        kept = {r.id: r for r in earlier.rows if r.status in ("ok", "skipped")}
        created = str(earlier.header.get("created", created))

    crop_info: dict[str, Any] | None = None
    crop_ctx: tuple[CropSpec, Path] | None = None
    if plan_.settings.crops and out_path is not None:
        spec = choose_crop(plan_.datasets[0], plan_.settings.crop_size)
        if spec is not None:
            folder = crops_folder(out_path)
            folder.mkdir(parents=True, exist_ok=True)
            from ..data.io import write_image

            hr_files = {}
            for scale in sorted({c.scale for c in plan_.contenders}):
                hr_crop, _ = _crop_lr(spec, scale)
                name = f"hr_x{scale}.png"
                write_image(folder / name, hr_crop)
                hr_files[str(scale)] = name
            crop_info = {
                "folder": folder.name,
                "dataset": spec.dataset,
                "image": spec.image,
                "box": [spec.top, spec.left, spec.size],
                "hr": hr_files,
            }
            crop_ctx = (spec, folder)

    rows: list[Row] = []
    header = _header(plan_, created, crop_info)

    def save(complete: bool) -> None:
        if out_path is not None:
            header["updated"] = now_utc()
            header["complete"] = complete
            write_json(out_path, {**header, "rows": [r.to_json() for r in rows]})

    save(complete=False)  # the file exists (with no rows yet) from the start of the run
    _import_runtimes(plan_, kept)
    with _ctrl_c_seen() as interrupted, heap.steady_heap(plan_.settings.heap) as applied:
        if plan_.settings.heap == "steady" and not applied:  # record what runs, not what was asked
            header["settings"]["heap"] = heap.describe("steady", applied)  # the fingerprint keeps the request
        bar = tqdm(plan_.contenders, desc="bench", unit="row", disable=None if progress else True, leave=False)
        for c in bar:
            bar.set_postfix_str(c.id, refresh=True)
            row = kept.get(c.id)
            if row is None:
                row = run_row(c, plan_, crop_ctx)
            if interrupted():
                raise KeyboardInterrupt  # swallowed by a runtime mid-row: that row is not kept
            rows.append(row)
            save(complete=False)
            if on_row is not None:
                on_row(row)
        by_id = {c.id: c for c in plan_.contenders}
        for round_no in range(2, plan_.settings.latency.rounds + 1):
            todo = [i for i, r in enumerate(rows) if r.ok and _rounds_done(r) < round_no]
            desc = f"latency round {round_no}/{plan_.settings.latency.rounds}"
            for i in tqdm(todo, desc=desc, unit="row", disable=None if progress else True, leave=False):
                again = _another_round(rows[i], by_id[rows[i].id], plan_)
                if interrupted():
                    raise KeyboardInterrupt
                rows[i] = again
                save(complete=False)
    save(complete=True)
    return Results({**header, "complete": True}, tuple(rows), out_path)
