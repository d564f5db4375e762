"""Open the model a user names, on the fastest backend here, and size its tiles to the budget.

``--backend auto`` (the default for bundles, and for zoo names, which run their shipped
bundle): the fastest backend and precision for that bundle

1. from ``sr-edge bench`` results measured on this CPU for this device profile, when
   there are any: the row of this bundle (same graph sha256, else same model, scale and
   precision) with the lowest frame p50 at the profile's primary resolution, among the
   backends installed here whose precision this machine runs natively;
2. else from the device profile's order: its first installed backend, at the cheapest
   precision it lists that the backend runs natively here (bf16 / fp16 before fp32; an
   int8 bundle runs int8), trying the next where a session cannot be opened.

Either way one line says what was chosen and why (:attr:`OpenedModel.note`).

``--tile auto``: the largest tile whose working memory fits half the profile's
``memory_budget_mb`` once the input image is counted, from the backend's bytes per LR pixel
(:func:`bytes_per_pixel`); the whole image when it fits.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import SrEdgeError
from ..types import check_scale
from ..upscale import Bicubic, Upscaler

if TYPE_CHECKING:
    import onnx

    from ..backends import Session
    from ..bundle import Bundle
    from ..devices import DeviceProfile

AUTO: Literal["auto"] = "auto"
DEFAULT_SCALE = 2
# Working memory of a backend per float of the largest layer's activations (its inputs plus
# its output) and LR pixel, measured as the peak-RSS rise over one 512^2 and one 1024^2 tile
# of the shipped x2/x4 bundles (ru_maxrss, 2 threads, Xeon Sapphire Rapids class): ORT
# fp32 1.3 (espcn) to 3.9 (fsrcnn: its PReLU rewrite and blocked layout keep more tensors);
# OpenVINO fp32 1.1-1.5, bf16 0.6-1.1. Backends not measured take the largest figure.
_BYTES_PER_FLOAT = {"ort": 4.0 * 4, "openvino": 1.5 * 4}
_UNMEASURED_BYTES_PER_FLOAT = 4.0 * 4
# The colour work around the network per LR pixel: float planes in, YCbCr, chroma and RGB
# out at s^2 pixels each (measured 25-29 bytes per output pixel for espcn x2 and x4).
_COLOUR_BYTES_PER_OUTPUT_PIXEL = 32.0
_BASELINE_MB = 256.0  # the interpreter, numpy and a runtime, before any image
_MIN_AUTO_TILE = 64
_SHAPE_KEEPING = frozenset({"DequantizeLinear", "QuantizeLinear", "Cast", "Identity"})


@dataclass(frozen=True)
class Choice:
    """A backend and precision for a bundle, and the one line saying why."""

    backend: str
    precision: str | None
    reason: str


@dataclass
class OpenedModel:
    """A model ready to upscale, with what tiling and the user need to know about it.

    ``bytes_per_pixel``: working memory per LR pixel of a tile (network and colour work).
    ``max_window``: the largest (height, width) input the session accepts (a TensorRT
    profile), else None. ``note``: the line saying which backend ``auto`` chose.
    """

    upscaler: Upscaler
    scale: int
    label: str
    bytes_per_pixel: float
    max_window: tuple[int, int] | None = None
    note: str | None = None
    warning: str | None = None
    session: Session | None = None

    def close(self) -> None:
        """Release the runtime session (if any)."""
        if self.session is not None:
            self.session.close()


def device_profile(name: str | None) -> DeviceProfile:
    """The named profile (or ``.toml`` path), else the one detected for this machine."""
    from ..devices import detect, load_profile

    if name:
        return load_profile(name)
    return detect()[0].profile


def default_results(profile: DeviceProfile) -> list[Path]:
    """Where ``sr-edge bench`` results for ``profile`` are looked for: its default output
    (``results-<device>.json`` in the working folder), then a checkout's baseline."""
    from ..paths import PROJECT_ROOT, in_checkout

    found = [Path(f"results-{profile.name}.json")]
    if in_checkout():
        found.append(PROJECT_ROOT / "benchmarks" / "baselines" / f"{profile.name}.json")
    return [p for p in found if p.is_file()]


def _frame_p50(row: Any, resolution: str) -> float | None:
    timing = row.latency.get(resolution)
    return None if timing is None else float(timing.frame.p50_ms)


def bench_choice(
    bundle: Bundle,
    profile: DeviceProfile,
    results: Sequence[Path],
    device: str,
    precision: str | None,
) -> tuple[Choice | None, list[str]]:
    """The fastest measured row for ``bundle`` in ``results`` (None when none applies here),
    and a line for every results file that was passed over and why."""
    from ..backends import get_backend
    from ..bench import load_results
    from ..provenance import cpu_model

    cpu = cpu_model()
    resolution = str(profile.workload.primary)
    skipped: list[str] = []
    best: tuple[float, Any, Path] | None = None
    for path in results:
        doc = load_results(path)
        measured_on = str(doc.header.get("machine", {}).get("cpu", ""))
        if measured_on != cpu:
            skipped.append(f"{path} was measured on {measured_on or 'an unrecorded CPU'}, not this {cpu}")
            continue
        for row in doc.rows:
            if not row.ok or row.peer is not None or row.backend not in _installed():
                continue
            record = dict(row.bundle or {})
            same_graph = record.get("onnx_sha256") == bundle.onnx_sha256
            same_model = (row.model, row.scale, record.get("precision")) == (
                bundle.model, bundle.scale, bundle.precision,
            )  # fmt: skip
            if not (same_graph or same_model) or (precision is not None and row.precision != precision):
                continue
            if get_backend(row.backend).not_native(row.precision, device):  # type: ignore[arg-type]
                continue
            p50 = _frame_p50(row, resolution)
            if p50 is not None and (best is None or p50 < best[0]):
                best = (p50, row, path)
    if best is None:
        return None, skipped
    p50, row, path = best
    why = f"fastest in {path}: {p50:.1f} ms per {resolution} frame, measured on this CPU"
    return Choice(row.backend, row.precision, why), skipped


def _installed() -> list[str]:
    from ..backends import available_backends

    return available_backends()


def profile_candidates(bundle: Bundle, profile: DeviceProfile, precision: str | None) -> list[tuple[str, str]]:
    """(backend, precision) pairs to try, best first, from the profile's backend order."""
    from ..backends import get_backend

    installed = _installed()
    order = [b for b in profile.runtime.backends if b in installed] or [b for b in installed if b != "torch"]
    out: list[tuple[str, str]] = []
    for name in order:
        backend = get_backend(name)
        if precision is not None:
            wanted = [precision]
        elif bundle.precision == "int8":
            wanted = ["int8"]
        else:  # cheaper float types first, where the profile asks for them
            wanted = [p for p in ("bf16", "fp16") if p in profile.runtime.precisions] + ["fp32"]
        out.extend((name, p) for p in wanted if p in backend.precisions)
    return out


def _options(backend: str, profile: DeviceProfile | None) -> dict[str, Any]:
    from ..backends import get_backend

    threads = profile.runtime.threads if profile is not None else None
    fields = {f.name for f in dataclasses.fields(get_backend(backend).options_type)}
    return {"threads": threads} if threads is not None and "threads" in fields else {}


def _open_session(
    bundle: Bundle, backend: str, precision: str | None, device: str | None, profile: DeviceProfile | None
) -> Session:
    from ..backends import load_bundle

    return load_bundle(bundle.path, backend, precision, device, **_options(backend, profile))


def _auto_session(
    bundle: Bundle, profile: DeviceProfile, results: Sequence[Path] | None, device: str | None, precision: str | None
) -> tuple[Session, str]:
    where = device or profile.runtime.device
    paths = list(results) if results is not None else default_results(profile)
    choice, skipped = bench_choice(bundle, profile, paths, where, precision)
    passed_over = f" ({'; '.join(skipped)})" if skipped else ""
    if choice is not None:
        session = _open_session(bundle, choice.backend, choice.precision, where, profile)
        return session, f"{choice.backend}/{session.precision} ({choice.reason}){passed_over}"
    failures = []
    for backend, prec in profile_candidates(bundle, profile, precision):
        try:
            session = _open_session(bundle, backend, prec, where, profile)
        except SrEdgeError as e:
            failures.append(f"{backend}/{prec}: {e}")
            continue
        if session.fallback:  # not native here: a cheaper label on the same work
            session.close()
            failures.append(f"{backend}/{prec}: {session.fallback}")
            continue
        why = (
            f"the first of device profile {profile.name}'s backends ({', '.join(profile.runtime.backends)}) "
            f"installed here, at the cheapest precision it runs natively; no bench results for this bundle "
            f"on this CPU{passed_over}: sr-edge bench --out results-{profile.name}.json measures them"
        )
        return session, f"{backend}/{session.precision} ({why})"
    raise SrEdgeError(f"{bundle.path}: no backend here could open it ({'; '.join(failures) or 'none installed'})")


def _activation_floats(model: onnx.ModelProto) -> float | None:
    """Floats per LR pixel of the largest layer (its image inputs plus its output)."""
    from onnx import numpy_helper

    graph = model.graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = tuple(numpy_helper.to_array(a.t).shape)
        elif node.op_type in _SHAPE_KEEPING and node.input and node.input[0] in shapes:
            shapes[node.output[0]] = shapes[node.input[0]]  # an int8 bundle's weights pass a DequantizeLinear
    first = graph.input[0]
    dims = first.type.tensor_type.shape.dim
    channels = {first.name: float(dims[1].dim_value or 1) if len(dims) == 4 else 1.0}
    factor = {first.name: 1.0}
    peak = 0.0
    for node in graph.node:
        ins = [i for i in node.input if i in channels]
        if not ins:
            continue
        f = max(factor[i] for i in ins)
        c = max(channels[i] for i in ins)
        attrs = {a.name: a for a in node.attribute}
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] in shapes:
            w = shapes[node.input[1]]
            group = attrs["group"].i if "group" in attrs else 1
            c = float(w[0] if node.op_type == "Conv" else w[1] * group)
            if node.op_type == "ConvTranspose" and "strides" in attrs:
                f *= float(attrs["strides"].ints[0])
        elif node.op_type == "DepthToSpace":
            block = float(attrs["blocksize"].i)
            c, f = c / block**2, f * block
        elif node.op_type == "Concat":
            c = sum(channels[i] for i in ins)
        live = sum(channels[i] * factor[i] ** 2 for i in ins) + c * f**2
        peak = max(peak, live)
        for out in node.output:
            channels[out], factor[out] = c, f
    return peak or None


def bytes_per_pixel(bundle: Bundle | None, backend: str | None, scale: int) -> float:
    """Estimated working memory per LR pixel of a tile: the network's largest layer on this
    backend (see ``_BYTES_PER_FLOAT``) plus the colour work at ``scale``."""
    colour = _COLOUR_BYTES_PER_OUTPUT_PIXEL * scale * scale + 16.0
    if bundle is None:  # bicubic: float64 passes over the image (about 4 copies of the output)
        return 4 * 8 * 4 * scale * scale + colour
    import onnx

    floats = _activation_floats(onnx.load(str(bundle.onnx_path), load_external_data=False)) or 256.0
    per_float = _BYTES_PER_FLOAT.get(backend or "", _UNMEASURED_BYTES_PER_FLOAT)
    return floats * per_float + colour


def auto_tile(
    height: int,
    width: int,
    channels: int,
    itemsize: int,
    model: OpenedModel,
    overlap: int,
    budget_mb: float,
) -> int:
    """A tile side (LR pixels) for an image under the memory budget; 0 for the whole image.

    Half the budget, less the decoded input image and the process baseline, goes to one
    tile's working memory (its window, overlap included, times ``bytes_per_pixel``); the
    other half to the output band being written (``tile`` LR rows of output).
    """
    budget = budget_mb * 2**20
    image = height * width * channels * itemsize
    spare = max(budget - image - _BASELINE_MB * 2**20, 0.0) / 2
    side = int(math.sqrt(spare / model.bytes_per_pixel)) - 2 * overlap
    band_row_bytes = model.scale**2 * width * channels * itemsize
    side = min(side, int(spare / band_row_bytes))
    if model.max_window is not None:
        side = min(side, min(model.max_window) - 2 * overlap)
    if side >= max(height, width):
        return 0
    side = max(side, _MIN_AUTO_TILE)
    return side - side % 8 if side > 64 else side


def _torch_receptive_field(net: Any) -> int | None:
    """A bound on a PyTorch SR module's reach: every convolution counted at LR scale (those
    after the upsampling reach less, so this over-counts, never under-counts), plus one for
    interpolations the module walk cannot see. None for layers of global reach."""
    import torch.nn as nn

    reach = 1
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            for k, d, p, st in zip(m.kernel_size, m.dilation, _pads(m), m.stride, strict=True):
                if st != 1:
                    return None
                reach += max(p, d * (k - 1) - p) if isinstance(p, int) else d * (k - 1)
        elif isinstance(m, nn.ConvTranspose2d):
            reach += max(
                math.ceil(d * (k - 1) / st) + 1 for k, d, st in zip(m.kernel_size, m.dilation, m.stride, strict=True)
            )
        elif isinstance(m, _GLOBAL_LAYERS(nn)):
            return None
    return reach


def _GLOBAL_LAYERS(nn: Any) -> tuple[type, ...]:
    pooling = nn.modules.pooling
    return (pooling._AdaptiveAvgPoolNd, pooling._AdaptiveMaxPoolNd, pooling._AvgPoolNd, pooling._MaxPoolNd,
            nn.Linear, nn.MultiheadAttention)  # fmt: skip


def _pads(m: Any) -> tuple[Any, ...]:
    pad = m.padding
    if isinstance(pad, str):  # "same" / "valid"
        return tuple(d * (k - 1) // 2 if pad == "same" else 0 for k, d in zip(m.kernel_size, m.dilation, strict=True))
    return tuple(pad)


def _check_bundle_scale(bundle: Bundle, scale: int | None) -> int:
    if scale is not None and scale != bundle.scale:
        raise SrEdgeError(f"{bundle.path}: bundle upscales x{bundle.scale}, not x{scale}; pass --scale {bundle.scale}")
    return bundle.scale


def open_model(
    spec: str | os.PathLike[str],
    scale: int | None = None,
    backend: str | None = AUTO,
    precision: str | None = None,
    device: str | None = None,
    profile: DeviceProfile | None = None,
    results: Sequence[Path] | None = None,
) -> OpenedModel:
    """The upscaler ``spec`` names (bicubic, a zoo name, a checkpoint, a bundle).

    ``scale`` None: a bundle's own, else 2; a bundle of another scale is a one-line error.
    ``backend`` ``auto`` (or None) chooses for a bundle or a zoo name's shipped bundle (see
    the module docstring); ``torch`` runs a zoo name or checkpoint in PyTorch eager.
    ``results``: bench results files to choose from (None: the default locations).
    """
    from ..bundle import read_bundle
    from ..source import resolve_model, shipped_bundle, torch_available

    if scale is not None:
        check_scale(scale)
    source = resolve_model(spec)
    auto = backend in (None, AUTO)
    bundle_path: Path | None = source.path if source.kind == "bundle" else None
    if source.kind == "zoo" and source.name is not None and backend != "torch":
        source.check_tag(scale or DEFAULT_SCALE)
        bundle_path = shipped_bundle(source.name, scale or DEFAULT_SCALE)
        if bundle_path is None and (not auto or not torch_available()):
            raise SrEdgeError(
                f"{source.name} x{scale or DEFAULT_SCALE} has no shipped bundle; export it first with sr-edge export"
            )
    if bundle_path is not None:
        bundle = read_bundle(bundle_path)
        _check_bundle_scale(bundle, scale)
        if auto:
            session, line = _auto_session(bundle, profile or device_profile(None), results, device, precision)
            note: str | None = f"backend auto: {line}"
        else:
            assert backend is not None
            session, note = _open_session(bundle, backend, precision, device, profile), None
        upscaler = session.upscaler()
        upscaler.receptive_field = bundle.receptive_field
        shapes = session.input_spec.shapes
        return OpenedModel(
            upscaler=upscaler,
            scale=bundle.scale,
            label=session.name,
            bytes_per_pixel=bytes_per_pixel(bundle, session.backend, bundle.scale),
            max_window=(shapes.max[1], shapes.max[2]) if shapes is not None else None,
            note=note,
            warning=session.fallback,
            session=session,
        )
    if source.kind == "bicubic":
        if not auto:
            raise SrEdgeError(f"--backend {backend} runs exported bundles; bicubic runs in NumPy")
        if precision not in (None, "fp32") or device not in (None, "cpu"):
            raise SrEdgeError("bicubic runs on the CPU in float only; drop --precision / --device")
        s = scale or DEFAULT_SCALE
        return OpenedModel(Bicubic(s), s, "bicubic", bytes_per_pixel(None, None, s))
    if not auto and backend != "torch":
        raise SrEdgeError(f"--backend {backend} runs exported bundles; export {spec} first with sr-edge export")
    return _torch_model(source, scale, precision, device)


def _torch_model(source: Any, scale: int | None, precision: str | None, device: str | None) -> OpenedModel:
    """A zoo name or checkpoint in PyTorch eager (imports torch; the training side)."""
    from ..models import model_card
    from ..resolve import torch_upscaler
    from ..source import torch_model

    if precision not in (None, "fp32"):
        raise SrEdgeError(f"--precision {precision} applies to exported bundles; {source.spec} runs in fp32")
    model, record = torch_model(source, scale or (None if source.kind == "checkpoint" else DEFAULT_SCALE))
    if scale is not None and model.scale != scale:
        raise SrEdgeError(f"{source.spec}: upscales x{model.scale}, not x{scale}; pass --scale {model.scale}")
    name = record["model"] if source.kind == "zoo" else f"{record['model']}@{Path(source.spec).name}"
    upscaler = torch_upscaler(model, name, model_card(record["model"]).color_mode, device or "cpu")
    upscaler.receptive_field = _torch_receptive_field(model.deploy())
    return OpenedModel(upscaler, model.scale, f"{name}@torch/fp32", _UNMEASURED_BYTES_PER_FLOAT * 256 + 200.0)
