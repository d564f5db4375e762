"""Will TensorRT take this graph? A CPU-side check of a bundle against TensorRT 10's ONNX parser.

TensorRT cannot be installed everywhere (not on the development machines, not in CI
without a GPU), so this checker reads the ONNX with the ``onnx`` package only and reports,
one line per problem:

- operators outside the TensorRT ONNX parser's support matrix, or in a non-standard
  domain (e.g. ONNX Runtime's ``com.microsoft`` fused ops, which an ORT offline
  optimisation would leave behind), and an opset outside 9-20 (TensorRT 10.0's range; newer
  10.x releases read more, but JetPack 6 ships 10.3);
- ``Resize`` attributes the parser rejects (antialias, aspect-ratio policy, coordinate
  modes ``half_pixel_symmetric`` / ``tf_crop_and_resize``);
- explicit quantisation: QDQ scales must be constant, finite and positive; zero points
  0 and int8 (TensorRT's int8 is symmetric; uint8 only as network I/O); per-channel
  scales only on constant weights and along axis 0 (output channels); activations per
  tensor;
- the input: one 4-D NCHW float tensor with a static channel count (TensorRT's
  convolutions need it at build time); float outputs;
- int64: no int64 network inputs or outputs, no int64 initializers beyond the int32 range
  (the parser narrows int64 weights to int32), no int64 data into float-only layers;
- dynamic shape bounds: the optimisation profile must fit the graph's static dimensions,
  and at the profile's max shape every tensor must stay under 2^31 elements (TensorRT's
  per-tensor volume limit), which a 4x model at a large max shape can exceed.

Sources: the operator list and restrictions follow onnx-tensorrt's ``docs/operators.md``
(https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md, TensorRT 10.x support
matrix) and, where that table lags, the parser itself: ``onnxOpImporters.cpp``'s Resize
importer maps mode ``cubic`` to ``InterpolationMode::kCUBIC`` (resizing the innermost two
dimensions only), although the table lists nearest and linear alone.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SrEdgeError, one_line
from .base import ShapeRange

if TYPE_CHECKING:
    import onnx

# Operators the TensorRT 10 ONNX parser imports ("Y" in onnx-tensorrt docs/operators.md;
# see the module docstring for the link). Sequence ops, string ops, Optional, the *Integer
# and QLinear* ops, DynamicQuantizeLinear, Unique, Col2Im, DFT and the like are absent.
TRT_SUPPORTED_OPS: frozenset[str] = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose
    Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp
    Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
    GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU
    HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler
    InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax
    Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish
    Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu
    QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal
    ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
    ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan
    Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
    Softplus Softsign SpaceToDepth Split Sqrt Squeeze STFT Sub Sum Tan Tanh ThresholdedRelu Tile
    TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)
TRT_OPSET_RANGE = (9, 20)
# Layers whose data input must be floating point (the support matrix lists no INT64 for them).
_FLOAT_ONLY_OPS = frozenset(
    "Conv ConvTranspose PRelu LeakyRelu Resize Clip Sigmoid Tanh Elu Selu Softplus BatchNormalization "
    "InstanceNormalization LayerNormalization GroupNormalization MatMul Gemm QuantizeLinear Sqrt Exp Log Erf "
    "AveragePool MaxPool GlobalAveragePool".split()
)
_RESIZE_MODES = ("nearest", "linear", "cubic")
_RESIZE_COORDS = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
_INT32 = (-(2**31), 2**31 - 1)
TRT_MAX_VOLUME = 2**31 - 1


@dataclass(frozen=True)
class TrtReport:
    """The checker's verdict: ``ok`` when ``problems`` is empty; ``notes`` are informational."""

    path: str
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()
    ops: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


class _Graph:
    """Lookups over one ONNX graph: constants by name, tensor types after shape inference."""

    def __init__(self, model: onnx.ModelProto) -> None:
        import onnx
        from onnx import numpy_helper

        self.model = model
        self.constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.output:
                for a in node.attribute:
                    if a.name == "value":
                        self.constants[node.output[0]] = numpy_helper.to_array(a.t)
        self.producers = {o: n for n in model.graph.node for o in n.output}
        try:
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # inference failures are reported by the checks that need types
            inferred = model
        self.types: dict[str, int] = {}
        for v in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]:
            if v.type.HasField("tensor_type"):
                self.types[v.name] = v.type.tensor_type.elem_type
        for t in model.graph.initializer:
            self.types[t.name] = t.data_type

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a constant input (initializer, Constant node, or Identity of one)."""
        if name in self.constants:
            return self.constants[name]
        node = self.producers.get(name)
        if node is not None and node.op_type == "Identity":
            return self.constant(node.input[0])
        return None

    def weight_root(self, name: str) -> np.ndarray | None:
        """The constant a tensor is derived from when it is a weight (a constant, or Q(constant)
        in the Q -> DQ weight form); ``None`` for activations."""
        value = self.constant(name)
        if value is not None:
            return value
        node = self.producers.get(name)
        if node is not None and node.op_type in ("QuantizeLinear", "Cast", "Identity"):
            return self.weight_root(node.input[0])
        return None


def _check_ops(g: _Graph, problems: list[str]) -> None:
    model = g.model
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            lo, hi = TRT_OPSET_RANGE
            if not lo <= imp.version <= hi:
                problems.append(f"opset {imp.version} is outside TensorRT 10's ONNX parser range {lo}-{hi}")
    unsupported: Counter[str] = Counter()
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            unsupported[f"{node.domain}::{node.op_type}"] += 1
        elif node.op_type not in TRT_SUPPORTED_OPS:
            unsupported[node.op_type] += 1
    for op, n in sorted(unsupported.items()):
        problems.append(f"operator {op} ({n} node{'s' if n > 1 else ''}) is not supported by TensorRT's ONNX parser")


def _check_resize(g: _Graph, problems: list[str]) -> None:
    for node in g.model.graph.node:
        if node.op_type != "Resize":
            continue
        where = f"Resize {node.name or node.output[0]!r}"
        mode = _attr(node, "mode", "nearest")
        if mode not in _RESIZE_MODES:
            problems.append(f"{where}: mode {mode!r} is not supported (nearest, linear, cubic)")
        coord = _attr(node, "coordinate_transformation_mode", "half_pixel")
        if coord not in _RESIZE_COORDS:
            problems.append(f"{where}: coordinate_transformation_mode {coord!r} is not supported by TensorRT")
        if int(_attr(node, "antialias", 0)) != 0:
            problems.append(f"{where}: antialias=1 is not supported by TensorRT")
        if _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
            problems.append(f"{where}: keep_aspect_ratio_policy must be 'stretch' for TensorRT")
        if mode == "cubic" and len(node.input) > 2 and node.input[2]:
            scales = g.constant(node.input[2])
            if scales is not None and scales.size >= 2 and np.any(scales.reshape(-1)[:-2] != 1):
                problems.append(f"{where}: TensorRT resizes cubically on the two innermost dimensions only")


def _check_qdq(g: _Graph, problems: list[str]) -> int:
    """Returns the number of Q/DQ nodes."""
    import onnx

    count = 0
    for node in g.model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        count += 1
        where = f"{node.op_type} {node.name or node.output[0]!r}"
        scale = g.constant(node.input[1]) if len(node.input) > 1 else None
        if scale is None:
            problems.append(f"{where}: scale is not a constant (TensorRT needs build-time scales)")
        elif not np.all(np.isfinite(scale)) or not np.all(scale > 0):
            problems.append(f"{where}: scales must be finite and positive (min {float(np.min(scale)):.3g})")
        if len(node.input) > 2 and node.input[2]:
            zp = g.constant(node.input[2])
            if zp is None:
                problems.append(f"{where}: zero point is not a constant")
            else:
                if np.any(zp != 0):
                    problems.append(f"{where}: zero point must be 0 (TensorRT int8 is symmetric)")
                zp_type = g.types.get(node.input[2])
                if zp_type is not None and zp_type not in (onnx.TensorProto.INT8, onnx.TensorProto.FLOAT8E4M3FN):
                    type_name = onnx.TensorProto.DataType.Name(zp_type).lower()
                    problems.append(f"{where}: {type_name} quantisation; TensorRT wants int8 (uint8 only as I/O)")
        if int(_attr(node, "block_size", 0)) != 0:
            problems.append(f"{where}: block quantisation is not supported for int8 in TensorRT")
        if scale is not None and scale.size > 1:
            weight = g.weight_root(node.input[0])
            if weight is None:
                problems.append(f"{where}: per-channel quantisation of an activation; TensorRT wants per-tensor")
            else:
                rank = weight.ndim
                axis = int(_attr(node, "axis", 1))
                if axis < 0:
                    axis += rank
                if axis != 0:
                    problems.append(
                        f"{where}: per-channel weight scales on axis {axis}; TensorRT wants axis 0 (output channels)"
                    )
    return count


def _check_io(g: _Graph, problems: list[str]) -> None:
    import onnx

    graph = g.model.graph
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    if len(graph.input) != 1:
        problems.append(f"graph has {len(graph.input)} inputs; an sr-edge bundle has exactly one (NCHW image)")
    for value in graph.input:
        tt = value.type.tensor_type
        dims = tt.shape.dim
        if tt.elem_type == onnx.TensorProto.INT64:
            problems.append(f"input {value.name!r} is int64; TensorRT networks take float images")
        elif tt.elem_type not in floats:
            problems.append(f"input {value.name!r} has element type {tt.elem_type}; expected float32 or float16")
        if len(dims) != 4:
            problems.append(f"input {value.name!r} has rank {len(dims)}; expected 4 (N x C x H x W)")
        elif not dims[1].HasField("dim_value"):
            problems.append(
                f"input {value.name!r} has a dynamic channel count ({dims[1].dim_param or '?'}); "
                "TensorRT needs it static"
            )
    for value in graph.output:
        if value.type.tensor_type.elem_type not in floats:
            problems.append(f"output {value.name!r} is not a float tensor (type {value.type.tensor_type.elem_type})")


def _check_int64(g: _Graph, problems: list[str]) -> None:
    import onnx

    for t in g.model.graph.initializer:
        if t.data_type == onnx.TensorProto.INT64:
            arr = g.constants[t.name]
            if arr.size and (arr.min() < _INT32[0] or arr.max() > _INT32[1]):
                problems.append(f"int64 initializer {t.name!r} holds values beyond int32, which TensorRT cannot narrow")
    for node in g.model.graph.node:
        if node.op_type in _FLOAT_ONLY_OPS and node.input and g.types.get(node.input[0]) == onnx.TensorProto.INT64:
            problems.append(f"{node.op_type} {node.name or node.output[0]!r} takes an int64 tensor as data")


def _dims_at(model: onnx.ModelProto, n: int, h: int, w: int) -> onnx.ModelProto:
    """A copy of ``model`` with its input fixed to n x C x h x w (for volume checks)."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]
    dims = fixed.graph.input[0].type.tensor_type.shape.dim
    for dim, v in zip((dims[0], dims[2], dims[3]), (n, h, w), strict=True):
        if not dim.HasField("dim_value"):  # a static size stays as the graph has it
            dim.Clear()
            dim.dim_value = v
    for out in fixed.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
    return onnx.shape_inference.infer_shapes(fixed, data_prop=True)


def _check_profile(g: _Graph, profile: ShapeRange, problems: list[str], notes: list[str]) -> None:
    graph = g.model.graph
    if len(graph.input) != 1:
        return
    dims = graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        return
    for label, idx, lo, hi in (
        ("batch", 0, profile.min[0], profile.max[0]),
        ("height", 2, profile.min[1], profile.max[1]),
        ("width", 3, profile.min[2], profile.max[2]),
    ):
        d = dims[idx]
        if d.HasField("dim_value") and not lo == hi == d.dim_value:
            problems.append(
                f"input {label} is static ({d.dim_value}) but the profile spans {lo}..{hi}; "
                "re-export with dynamic shapes or match the profile"
            )
    try:
        at_max = _dims_at(g.model, *profile.max)
    except Exception as e:
        notes.append(f"shape inference at the max profile failed ({one_line(str(e))[:120]}); volumes not checked")
        return
    worst: tuple[int, str] = (0, "")
    for v in [*at_max.graph.value_info, *at_max.graph.output]:
        shape = v.type.tensor_type.shape.dim
        if shape and all(d.HasField("dim_value") for d in shape):
            volume = math.prod(d.dim_value for d in shape)
            worst = max(worst, (volume, v.name))
    if worst[0] > TRT_MAX_VOLUME:
        problems.append(
            f"tensor {worst[1]!r} holds {worst[0]:,} elements at the max profile "
            f"{'x'.join(map(str, profile.max))} (TensorRT's limit is 2^31-1); lower the max shape"
        )
    elif worst[0]:
        notes.append(f"largest tensor at the max profile: {worst[1]!r} with {worst[0]:,} elements")


def check_tensorrt(source: str | os.PathLike[str] | onnx.ModelProto, profile: ShapeRange | None = None) -> TrtReport:
    """Check a bundle folder, an ONNX file or a loaded model for TensorRT 10 compatibility."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        model, label = source, "<model>"
    else:
        from ..bundle import MANIFEST, MODEL_FILE, is_bundle, read_bundle

        path = os.fspath(source)
        onnx_path = read_bundle(path).onnx_for("tensorrt") if is_bundle(path) else path
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, MODEL_FILE)) and not is_bundle(path):
            raise SrEdgeError(
                f"{path}: bundle folder without {MANIFEST} (incomplete: re-export it with sr-edge export), "
                f"or pass {os.path.join(path, MODEL_FILE)} to check the graph alone"
            )
        if not os.path.isfile(onnx_path):
            raise SrEdgeError(f"{path}: no such bundle or ONNX file (a bundle folder holds {MODEL_FILE})")
        try:
            model = onnx.load(os.fspath(onnx_path))
        except Exception as e:
            raise SrEdgeError(f"{onnx_path}: not a readable ONNX file ({one_line(str(e))[:200]})") from None
        label = os.fspath(path)
    g = _Graph(model)
    problems: list[str] = []
    notes: list[str] = []
    _check_ops(g, problems)
    _check_resize(g, problems)
    n_qdq = _check_qdq(g, problems)
    _check_io(g, problems)
    _check_int64(g, problems)
    _check_profile(g, profile or ShapeRange(), problems, notes)
    if n_qdq:
        notes.append(f"{n_qdq} Q/DQ nodes: build with precision int8 (explicit quantisation)")
    ops = dict(sorted(Counter(n.op_type for n in model.graph.node).items()))
    return TrtReport(label, tuple(problems), tuple(notes), ops)


def format_report(report: TrtReport, verbose: bool = False) -> Iterable[str]:
    """Lines for the terminal: one per problem, then a verdict."""
    for p in report.problems:
        yield f"FAIL {report.path}: {p}"
    if verbose:
        for n in report.notes:
            yield f"note {report.path}: {n}"
        yield f"ops {report.path}: " + ", ".join(f"{k} x{v}" for k, v in report.ops.items())
    if report.ok:
        yield f"OK   {report.path}: TensorRT-friendly ({sum(report.ops.values())} nodes)"
