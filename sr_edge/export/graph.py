"""ONNX post-processing and comparison: canonical names and shapes, checks, and a structural
comparison of two graphs that no CPU can break (weights compared within a tolerance, never
by their bytes: a re-export on another CPU class may round a float differently)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Literal

from ..bundle import INPUT_NAME, OUTPUT_NAME
from ..errors import MissingDependencyError, SrEdgeError, one_line
from ..provenance import library_versions
from ..version import __version__
from .convert import quiet_exporters

if TYPE_CHECKING:
    import onnx


def _name_dims(model: onnx.ModelProto, scale: int, channels: int) -> None:
    """Canonical shapes: lr [batch, C, height, width] -> sr [batch, C, s*height, s*width]."""
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise SrEdgeError(
            f"exported graph has {len(model.graph.input)} inputs and {len(model.graph.output)} outputs; expected 1 each"
        )
    names = {
        INPUT_NAME: ("batch", channels, "height", "width"),
        OUTPUT_NAME: ("batch", channels, f"{scale}*height", f"{scale}*width"),
    }
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise SrEdgeError(f"exported {value.name!r} has rank {len(dims)}, expected 4 (NCHW)")
        for dim, want in zip(dims, names[value.name], strict=True):
            if isinstance(want, int):
                dim.Clear()
                dim.dim_value = want
            else:
                dim.Clear()
                dim.dim_param = want


def postprocess(model: onnx.ModelProto, scale: int, channels: int, simplify: bool) -> tuple[onnx.ModelProto, str]:
    """Simplify, name dims, check and shape-infer. Returns (graph, simplifier used)."""
    import onnx

    simplifier = "none"
    if simplify:
        try:
            import onnxslim
        except ImportError:
            raise MissingDependencyError("graph simplification in sr-edge export", "train", "onnxslim") from None
        with quiet_exporters():
            model = onnxslim.slim(model)
        simplifier = f"onnxslim {library_versions(('onnxslim',)).get('onnxslim', '?')}"
    names = [v.name for v in model.graph.input], [v.name for v in model.graph.output]
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise SrEdgeError(f"exported graph has inputs/outputs {names}, expected ['lr'] / ['sr']")
    _name_dims(model, scale, channels)
    # Drop the exporters' intermediate shape annotations (their symbolic names, e.g.
    # "TruncToInt(2.0*ToFloat(height))", are noise) and let ONNX re-infer them.
    del model.graph.value_info[:]
    model.doc_string = ""
    model.graph.doc_string = ""
    model.producer_name = "sr-edge"
    model.producer_version = __version__
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise SrEdgeError(f"exported graph fails the ONNX checker: {one_line(str(e))[:300]}") from None
    return model, simplifier


def graph_sha256(model: onnx.ModelProto) -> str:
    """sha256 of the graph without its metadata: equal for re-exports of the same weights."""
    import onnx

    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.metadata_props[:]
    return hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()


def graph_precision(model: onnx.ModelProto) -> Literal["fp32", "fp16", "int8"]:
    """int8 for an explicit-quantisation (QDQ) graph, fp16 for a half-precision input, else fp32."""
    import onnx

    ops = {n.op_type for n in model.graph.node}
    if {"QuantizeLinear", "DequantizeLinear"} & ops:
        return "int8"
    if model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
        return "fp16"
    return "fp32"


def graph_structure(model: onnx.ModelProto) -> dict[str, Any]:
    """Everything about a graph but its weight values: opsets, inputs and outputs with their
    types and shapes, every node with its attributes, and every initializer's name, type and
    dims. Equal for re-exports of the same model on any CPU."""
    import onnx

    def value(v: onnx.ValueInfoProto) -> tuple[Any, ...]:
        t = v.type.tensor_type
        dims = tuple(d.dim_param or d.dim_value for d in t.shape.dim)
        return v.name, t.elem_type, dims

    def attribute(a: onnx.AttributeProto) -> tuple[str, Any]:
        if a.type == onnx.AttributeProto.TENSOR:  # a constant's value is a weight: its shape here
            return a.name, ("tensor", a.t.data_type, tuple(a.t.dims))
        got = onnx.helper.get_attribute_value(a)
        return a.name, tuple(got) if isinstance(got, list) else got

    return {
        "opsets": sorted((o.domain, o.version) for o in model.opset_import),
        "inputs": [value(v) for v in model.graph.input],
        "outputs": [value(v) for v in model.graph.output],
        "nodes": [
            (n.op_type, n.domain, tuple(n.input), tuple(n.output), tuple(sorted(attribute(a) for a in n.attribute)))
            for n in model.graph.node
        ],
        "initializers": sorted((t.name, t.data_type, tuple(t.dims)) for t in model.graph.initializer),
    }


def _weights(model: onnx.ModelProto) -> dict[str, Any]:
    import numpy as np
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        for a in n.attribute:
            if a.type == a.TENSOR:
                out[f"{n.output[0]}:{a.name}"] = numpy_helper.to_array(a.t)
    return {k: np.asarray(v) for k, v in out.items()}


def compare_graphs(a: onnx.ModelProto, b: onnx.ModelProto, rtol: float = 1e-5, atol: float = 1e-6) -> list[str]:
    """The differences between two graphs (empty when they match): structure compared exactly,
    weights within ``|x - y| <= atol + rtol * |y|`` (integer weights exactly)."""
    import numpy as np

    sa, sb = graph_structure(a), graph_structure(b)
    problems = [f"{key} differ" for key in sa if sa[key] != sb[key]]
    if problems:
        return problems
    wa, wb = _weights(a), _weights(b)
    for name, x in wa.items():
        y = wb[name]
        if x.dtype.kind in "iub":
            if not np.array_equal(x, y):
                problems.append(f"{name}: integer values differ")
        elif not np.allclose(x, y, rtol=rtol, atol=atol):
            worst = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
            problems.append(f"{name}: max |diff| {worst:.3g} over the tolerance")
    return problems
