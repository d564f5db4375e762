"""The bundle format: what ``sr-edge export`` writes and every backend reads.

A bundle is a folder::

    export/espcn/x2/
        model.onnx      the graph: input ``lr`` N x C x H x W float32 in [0, 1],
                        output ``sr`` N x C x sH x sW; batch, height and width dynamic
        manifest.json   what the graph is and where it came from (see :class:`Bundle`)

``manifest.json`` records the format name and version, the model (name, family, scale,
colour mode, channels), the input/output layout, dtype and value range, the opset and
precision, the sha256 of every file, the parent checkpoint and its sha256, the export
(sr-edge version, git commit, exporter, time) and the PSNR/SSIM measured on the exported
graph. An int8 bundle may hold one graph per runtime, since each fuses another QDQ
pattern: ``placements`` maps a backend to its file (``model.onnx`` for OpenVINO and
TensorRT, ``model-ort.onnx`` for ONNX Runtime; a backend it does not name runs
``model.onnx``). ``placements_by_cpu`` maps a CPU class (``vnni``, ``no-vnni``: the int8
kernels differ) to the files measured best there, and overrides ``placements`` on a CPU of
that class; :meth:`Bundle.onnx_for` is how every backend picks its file. The
same facts sit in the ONNX ``metadata_props`` (keys prefixed ``sr_edge.``) so a lone
``model.onnx`` still says what it is.

Reading a bundle (:func:`read_bundle`) checks the format name and version and the sha256
of every file; each failure is one line naming what to do. Nothing here imports torch.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import SrEdgeError, one_line
from .provenance import sha256_file
from .types import ColorMode

if TYPE_CHECKING:
    import onnx

FORMAT = "sr-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
PLACEMENTS = "placements"  # manifest key: backend -> graph file (int8 bundles)
PLACEMENTS_BY_CPU = "placements_by_cpu"  # manifest key: CPU int8 class -> {backend -> graph file}
INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
METADATA_PREFIX = "sr_edge."

BundlePrecision = Literal["fp32", "fp16", "int8"]


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as the manifest records it."""

    name: str
    layout: str
    dtype: str
    value_range: tuple[float, float]
    shape: tuple[int | str, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TensorSpec:
        lo, hi = d["range"]
        return cls(str(d["name"]), str(d["layout"]), str(d["dtype"]), (float(lo), float(hi)), tuple(d["shape"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layout": self.layout,
            "dtype": self.dtype,
            "range": list(self.value_range),
            "shape": list(self.shape),
        }


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk, its manifest parsed and its files verified.

    ``manifest`` keeps the whole JSON document (source, export and metrics records) for
    tools that want more than the typed fields.
    """

    path: Path
    model: str
    family: str
    scale: int
    color_mode: ColorMode
    channels: int
    opset: int
    precision: BundlePrecision
    input: TensorSpec
    output: TensorSpec
    manifest: Mapping[str, Any]

    @property
    def onnx_path(self) -> Path:
        """The graph file."""
        return self.path / MODEL_FILE

    @property
    def placements(self) -> Mapping[str, str]:
        """Backend name -> graph file, for bundles whose graph differs per runtime (int8 QDQ
        placements: ``model.onnx`` for OpenVINO and TensorRT, ``model-ort.onnx`` for ONNX
        Runtime). Empty for bundles with one graph for every backend."""
        placements = self.manifest.get(PLACEMENTS, {})
        return dict(placements) if isinstance(placements, Mapping) else {}

    def onnx_for(self, backend: str) -> Path:
        """The graph file ``backend`` runs: the one measured best on this CPU's class where the
        manifest has it (CPU runtimes), else its placement, else ``model.onnx``."""
        by_cpu = self.manifest.get(PLACEMENTS_BY_CPU) or {}
        if by_cpu and backend in ("ort", "openvino"):
            from .devices.probe import int8_cpu_class

            here = by_cpu.get(int8_cpu_class(), {})
            if backend in here:
                return self.path / here[backend]
        return self.path / self.placements.get(backend, MODEL_FILE)

    @property
    def onnx_sha256(self) -> str:
        """sha256 of ``model.onnx`` as the manifest records it (verified on reading)."""
        return str(self.manifest["files"][MODEL_FILE]["sha256"])

    @property
    def source(self) -> Mapping[str, Any]:
        """Where the weights came from: ``kind`` (shipped, checkpoint, module), model, checkpoint, sha256."""
        return dict(self.manifest.get("source", {}))

    @property
    def metrics(self) -> Mapping[str, Any] | None:
        """PSNR/SSIM measured on the exported graph at export time (``None`` if skipped)."""
        m = self.manifest.get("metrics")
        return dict(m) if m else None

    @property
    def name(self) -> str:
        """A short display name: model, scale and precision."""
        return f"{self.model}-x{self.scale}-{self.precision}"

    @functools.cached_property
    def receptive_field(self) -> int | None:
        """How far (in LR pixels) an output pixel's inputs reach from its own LR pixel.

        The manifest's ``receptive_field`` where the exporter recorded it, else computed
        from the graph (:func:`graph_receptive_field`), so bundles exported before the
        field existed tile just as exactly. ``None``: the graph holds an operation whose
        reach is not known (a global pooling, a reshape), so it cannot be tiled exactly.
        """
        recorded = self.manifest.get("receptive_field")
        if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 0:
            return recorded
        import onnx

        return graph_receptive_field(onnx.load(str(self.onnx_path), load_external_data=False))


def bundle_dir(path: str | os.PathLike[str]) -> Path:
    """The bundle folder for a folder, its ``manifest.json`` or its ``model.onnx``."""
    p = Path(path)
    if p.name in (MANIFEST, MODEL_FILE) and p.is_file():
        return p.parent
    return p


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a bundle folder (or a file inside one)."""
    return (bundle_dir(path) / MANIFEST).is_file()


def _require(doc: Mapping[str, Any], key: str, where: Path) -> Any:
    if key not in doc:
        raise SrEdgeError(f"{where}: manifest lacks {key!r}; the bundle is incomplete, re-export it")
    return doc[key]


RUN_CHECKPOINTS = ("best.safetensors", "last.safetensors")


def check_not_training_run(path: str | os.PathLike[str]) -> None:
    """One-line error where a training run folder is given in place of a model or bundle."""
    folder = Path(path)
    if not folder.is_dir() or (folder / MANIFEST).is_file():
        return
    for name in RUN_CHECKPOINTS:
        if (folder / name).is_file():
            ckpt = folder / name
            raise SrEdgeError(
                f"{folder}: a training run folder, not a model; use its checkpoint {ckpt} "
                f"(sr-edge export {ckpt} makes a bundle of it)"
            )


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw manifest of a bundle (format name and version checked, files not verified)."""
    folder = bundle_dir(path)
    manifest_path = folder / MANIFEST
    if not folder.exists():
        raise SrEdgeError(f"{folder}: no such bundle folder")
    if not manifest_path.is_file():
        check_not_training_run(folder)
        raise SrEdgeError(f"{folder}: not a bundle (no {MANIFEST}); create one with sr-edge export")
    try:
        doc = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SrEdgeError(f"{manifest_path}: unreadable manifest ({one_line(str(e))})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise SrEdgeError(f"{manifest_path}: not an sr-edge bundle manifest (format {found!r})")
    try:
        version = int(doc.get("format_version", 0))
    except (TypeError, ValueError):
        raise SrEdgeError(f"{manifest_path}: bad format_version {doc.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise SrEdgeError(
            f"{folder}: bundle format {version} is newer than this sr-edge reads ({FORMAT_VERSION}); "
            "upgrade sr-edge or re-export the bundle with this version"
        )
    if version < 1:
        raise SrEdgeError(f"{manifest_path}: bad format_version {version}")
    return doc


def verify_files(folder: Path, files: Mapping[str, Any]) -> None:
    """Check that every file the manifest lists exists with the recorded sha256."""
    if MODEL_FILE not in files:
        raise SrEdgeError(f"{folder}: manifest lists no {MODEL_FILE}; the bundle is incomplete, re-export it")
    for name, entry in files.items():
        f = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise SrEdgeError(f"{folder}: manifest lists a file outside the bundle ({name}); refusing it")
        if not f.is_file():
            raise SrEdgeError(f"{f}: missing; the bundle is incomplete, copy the whole folder or re-export it")
        digest = sha256_file(f)
        want = str(entry.get("sha256", "")) if isinstance(entry, Mapping) else ""
        if digest != want:
            raise SrEdgeError(
                f"{f}: sha256 {digest[:12]}... does not match the manifest ({want[:12]}...); "
                "the bundle was modified or damaged, re-export it"
            )


def read_bundle(path: str | os.PathLike[str], verify: bool = True) -> Bundle:
    """Open a bundle folder (or its manifest / model file); ``verify`` checks every sha256."""
    folder = bundle_dir(path)
    doc = read_manifest(folder)
    files = _require(doc, "files", folder)
    if not isinstance(files, Mapping):
        raise SrEdgeError(f"{folder}: manifest 'files' must be a mapping")
    if verify:
        verify_files(folder, files)
    elif not (folder / MODEL_FILE).is_file():
        raise SrEdgeError(f"{folder / MODEL_FILE}: missing; the bundle is incomplete")
    try:
        color_mode = str(_require(doc, "color_mode", folder))
        precision = str(_require(doc, "precision", folder))
        if color_mode not in ("rgb", "y"):
            raise SrEdgeError(f"{folder}: manifest colour mode {color_mode!r} is not 'rgb' or 'y'")
        if precision not in ("fp32", "fp16", "int8"):
            raise SrEdgeError(f"{folder}: manifest precision {precision!r} is not fp32, fp16 or int8")
        _check_placements(doc.get(PLACEMENTS, {}), files, folder)
        by_cpu = doc.get(PLACEMENTS_BY_CPU, {})
        if not isinstance(by_cpu, Mapping):
            raise SrEdgeError(f"{folder}: manifest '{PLACEMENTS_BY_CPU}' must map CPU classes to placements")
        for placements in by_cpu.values():
            _check_placements(placements, files, folder)
        return Bundle(
            path=folder,
            model=str(_require(doc, "model", folder)),
            family=str(doc.get("family", "")),
            scale=int(_require(doc, "scale", folder)),
            color_mode=color_mode,  # type: ignore[arg-type]  # checked above
            channels=int(_require(doc, "channels", folder)),
            opset=int(_require(doc, "opset", folder)),
            precision=precision,  # type: ignore[arg-type]  # checked above
            input=TensorSpec.from_json(_require(doc, "input", folder)),
            output=TensorSpec.from_json(_require(doc, "output", folder)),
            manifest=doc,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise SrEdgeError(f"{folder}: malformed manifest ({one_line(str(e))}); re-export the bundle") from None


def _check_placements(placements: Any, files: Mapping[str, Any], folder: Path) -> None:
    """A placement must name a file the manifest lists (and so verifies)."""
    if not isinstance(placements, Mapping):
        raise SrEdgeError(f"{folder}: manifest 'placements' must map backend names to graph files")
    for backend, name in placements.items():
        if not isinstance(name, str) or name not in files:
            raise SrEdgeError(
                f"{folder}: placement for {backend} names {name!r}, which the manifest's files do not list; "
                "re-export the bundle"
            )


def find_bundles(root: str | os.PathLike[str]) -> list[Path]:
    """Every bundle folder under ``root`` (sorted), e.g. the committed ``export/`` tree."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(p.parent for p in base.rglob(MANIFEST) if p.is_file())


def metadata_props(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The manifest's facts as ONNX ``metadata_props`` (strings; nested records as JSON).

    ``files`` is left out: a file cannot hold its own hash.
    """
    out: dict[str, str] = {}
    for key, value in manifest.items():
        if key == "files":
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        out[METADATA_PREFIX + key] = text
    return out


# Operations that map each pixel to the same pixel (on any channels): they add no reach.
_POINTWISE = frozenset(
    "Abs Add BatchNormalization Cast Ceil Clip DequantizeLinear Div Dropout Elu Erf Exp Floor Gelu HardSigmoid "
    "HardSwish Identity LeakyRelu Log Max Mean Min Mish Mul Neg Pow PRelu QuantizeLinear Reciprocal Relu Round "
    "Selu Sigmoid Softplus Sqrt Sub Sum Tanh Where".split()
)
_CHANNEL_AXES = (1, -3)  # NCHW: concatenating or splitting channels keeps pixels in place
_ONE_IMAGE_INPUT = frozenset({"Conv", "ConvTranspose", "Resize", "DepthToSpace"})
Interval = tuple[int, int]


@dataclass(frozen=True)
class _Constants:
    """What the walk reads from a graph's constant tensors: shapes (conv kernels) and
    short float vectors (Resize scales)."""

    shapes: Mapping[str, tuple[int, ...]]
    vectors: Mapping[str, tuple[float, ...]]

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> _Constants:
        from onnx import numpy_helper

        arrays = [(t.name, numpy_helper.to_array(t)) for t in graph.initializer]
        for node in graph.node:
            if node.op_type == "Constant" and "value" in _attrs(node):
                arrays.append((node.output[0], numpy_helper.to_array(_attrs(node)["value"])))
        shapes = {name: tuple(int(d) for d in a.shape) for name, a in arrays}
        vectors = {name: tuple(float(v) for v in a.ravel()) for name, a in arrays if a.ndim == 1 and a.size <= 8}
        return cls(shapes, vectors)


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _conv_axis(node: onnx.NodeProto, consts: _Constants, axis: int) -> tuple[int, int, int] | None:
    """(dilated kernel span, stride, padding before) of a Conv / ConvTranspose on one spatial axis."""
    a = _attrs(node)
    kernel = a.get("kernel_shape")
    if kernel is None and len(node.input) > 1 and node.input[1] in consts.shapes:
        kernel = consts.shapes[node.input[1]][2:]
    if kernel is None or len(kernel) != 2:
        return None
    span = int(a.get("dilations", [1, 1])[axis]) * (int(kernel[axis]) - 1)
    stride = int(a.get("strides", [1, 1])[axis])
    auto = _text(a.get("auto_pad"), "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER") and node.op_type == "Conv":
        before = span // 2 if auto == "SAME_UPPER" else -(-span // 2)
    elif auto == "VALID":
        before = 0
    else:
        before = int(a.get("pads", [0, 0, 0, 0])[axis])
    return span, stride, before


def _resize_factor(node: onnx.NodeProto, consts: _Constants, axis: int) -> int | None:
    scales = consts.vectors.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scales is None or len(scales) != 4:
        return None
    factor = scales[2 + axis]
    return int(factor) if factor >= 1 and factor == int(factor) else None


def _reads(node: onnx.NodeProto, out: Interval, axis: int, consts: _Constants) -> Interval | None:
    """The input pixels (one spatial axis, inclusive) that output pixels ``out`` of ``node`` read;
    ``None`` for an operation whose reach is not known."""
    lo, hi = out
    op = node.op_type
    if op in _POINTWISE:
        return out
    if op in ("Concat", "Split"):
        return out if _attrs(node).get("axis", 0) in _CHANNEL_AXES else None
    if op == "DepthToSpace":
        block = int(_attrs(node)["blocksize"])
        return lo // block, hi // block
    if op in ("Conv", "ConvTranspose"):
        geometry = _conv_axis(node, consts, axis)
        if geometry is None:
            return None
        span, stride, before = geometry
        if op == "Conv":
            # a strided (downsampling) conv is not part of any SR graph this walk knows
            return (lo - before, hi - before + span) if stride == 1 else None
        # ConvTranspose: out[o] += in[i] * w[j] where o = i * stride - before + dilation * j
        return -(-(lo + before - span) // stride), (hi + before) // stride
    if op == "Resize":
        factor = _resize_factor(node, consts, axis)
        if factor is None:
            return None
        reach = 1 if _text(_attrs(node).get("mode"), "nearest") == "nearest" else 2
        return lo // factor - reach, hi // factor + reach
    return None


def _upscale_factor(graph: onnx.GraphProto, consts: _Constants, data: set[str]) -> int | None:
    """The product of the DepthToSpace blocks, ConvTranspose strides and Resize factors on the
    image path (the largest where branches differ)."""
    factor = {graph.input[0].name: 1}
    for node in graph.node:
        ins = [factor[i] for i in node.input if i in factor]
        if not ins:
            continue
        f = max(ins)
        if node.op_type == "DepthToSpace":
            f *= int(_attrs(node)["blocksize"])
        elif node.op_type == "ConvTranspose":
            f *= (_conv_axis(node, consts, 0) or (0, 1, 0))[1]
        elif node.op_type == "Resize":
            f *= _resize_factor(node, consts, 0) or 1
        factor.update((o, f) for o in node.output if o in data)
    return factor.get(graph.output[0].name)


def graph_receptive_field(model: onnx.ModelProto) -> int | None:
    """The reach, in LR pixels, of an SR graph's output pixels: the overlap tiles need.

    For each output pixel of one period (the scale) on each axis, the LR pixels it reads
    are found by walking the graph backwards from the output, every operation mapping the
    interval of pixels it writes to the interval it reads (a convolution widens it by its
    padding and dilated kernel, asymmetric pads included; a ConvTranspose or DepthToSpace
    divides it by its stride or block; pointwise operations keep it). The answer is the
    largest distance from an output pixel's own LR pixel to a pixel it reads, so tiles that
    overlap by at least this much stitch to the whole-image result. ``None`` where an
    operation on the image path has an unknown or global reach (pooling, reshapes, attention).
    """
    graph = model.graph
    if len(graph.input) < 1 or len(graph.output) != 1:
        return None
    consts = _Constants.of(graph)
    image_in = graph.input[0].name
    data = {image_in}  # the tensors computed from the image (weights and shapes are not)
    for node in graph.node:
        if any(i in data for i in node.input):
            data.update(node.output)
    scale = _upscale_factor(graph, consts, data)
    if scale is None or scale < 1:
        return None
    base = 1 << 20  # an LR pixel far from every border, so no interval is clipped
    reach = 0
    for axis in range(2):
        for residue in range(scale):
            o = base * scale + residue
            need: dict[str, Interval] = {graph.output[0].name: (o, o)}
            for node in reversed(graph.node):
                written = [need[n] for n in node.output if n in need]
                if not written or not any(i in data for i in node.input):
                    continue
                got = _reads(node, (min(w[0] for w in written), max(w[1] for w in written)), axis, consts)
                if got is None:
                    return None
                # the pixels of a conv or resize come through its first input (the rest are
                # weights, scales or sizes, perhaps computed from the image's shape)
                pixels = node.input[:1] if node.op_type in _ONE_IMAGE_INPUT else node.input
                for name in (i for i in pixels if i in data):
                    lo, hi = need.get(name, got)
                    need[name] = (min(lo, got[0]), max(hi, got[1]))
            if image_in not in need:
                return None
            lo, hi = need[image_in]
            reach = max(reach, base - lo, hi - base)
    return reach
