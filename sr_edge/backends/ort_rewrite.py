"""Graph rewrites that let ONNX Runtime's CPU provider keep a whole SR network in its fast layout.

With ``graph_optimization="all"``, ORT's CPU provider converts convolutions to its blocked
NCHWc layout and fuses Relu/LeakyRelu/Clip into them. It has no NCHWc kernel for ``PRelu``
with a per-channel slope (FSRCNN, ECBSR), so around every PReLU it reorders the tensor back
to NCHW, runs a generic broadcasting kernel, and reorders again: on ECBSR-M4C16 x2 at 640x360
that is 60% of the network's time, the convolutions 34%.

:func:`prelu_for_nchwc` replaces each such PReLU by ops the layout pass keeps blocked,
with bit-identical results (IEEE multiplication by -1 and by the slope, a Relu, and an
addition of an exact zero)::

    PRelu(x, a) = Relu(x) + DWConv1x1(Relu(DWConv1x1(x, -1)), -a)

A slope that is one scalar becomes ``LeakyRelu(alpha)``, which ORT fuses into the
convolution before it. Quantized (QDQ) graphs are left alone: ORT fuses their Q/DQ pairs
into integer kernels and a rewrite would break those patterns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT = 1  # onnx.TensorProto.FLOAT: the rewrite adds float32 weights, so only float32 graphs qualify
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger"})


def _channels(model: Any) -> dict[str, int]:
    """Known channel counts (dim 1 of rank-4 tensors) by tensor name, from ONNX shape inference."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an unusual graph: no rewrite is safe without shapes
        return {}
    out: dict[str, int] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            out[vi.name] = int(dims[1].dim_value)
    return out


def prelu_for_nchwc(model: Any) -> int:
    """Rewrite ``model``'s constant-slope PRelu nodes in place (see the module doc); returns how many.

    A node is rewritten when its slope is an initializer holding one value per channel
    (shape ``[C,1,1]`` or ``[1,C,1,1]``) of a rank-4 input with ``C`` known channels, or a
    single value. Anything else (QDQ graphs, slopes computed at run time, other shapes)
    stays as it is.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    if any(n.op_type in QDQ_OPS for n in graph.node):
        return 0
    inits = {i.name: i for i in graph.initializer}
    channels: dict[str, int] | None = None
    nodes: list[Any] = []
    added: list[Any] = []
    count = 0
    replaced: set[str] = set()
    for index, node in enumerate(graph.node):
        slope_name = node.input[1] if node.op_type == "PRelu" and len(node.input) == 2 else ""
        if slope_name not in inits or node.domain not in ("", "ai.onnx") or inits[slope_name].data_type != FLOAT:
            nodes.append(node)
            continue
        slope = numpy_helper.to_array(inits[slope_name]).astype(np.float32)
        x, y = node.input[0], node.output[0]
        stem = f"sr_edge_prelu{index}"
        if slope.size == 1:
            nodes.append(helper.make_node("LeakyRelu", [x], [y], name=stem, alpha=float(slope.reshape(-1)[0])))
            replaced.add(slope_name)
            count += 1
            continue
        if channels is None:
            channels = _channels(model)
        c = slope.size
        per_channel = slope.shape in ((c, 1, 1), (1, c, 1, 1))
        if not per_channel or channels.get(x) != c:
            nodes.append(node)
            continue
        neg = numpy_helper.from_array(np.full((c, 1, 1, 1), -1.0, np.float32), f"{stem}_minus_one")
        neg_slope = numpy_helper.from_array((-slope).reshape(c, 1, 1, 1), f"{stem}_minus_slope")
        added += [neg, neg_slope]
        dw: dict[str, Any] = {"group": c, "kernel_shape": [1, 1]}  # depthwise 1x1: one multiply per element
        nodes += [
            helper.make_node("Relu", [x], [f"{stem}_pos"], name=f"{stem}_pos"),
            helper.make_node("Conv", [x, neg.name], [f"{stem}_negx"], name=f"{stem}_negx", **dw),
            helper.make_node("Relu", [f"{stem}_negx"], [f"{stem}_neg"], name=f"{stem}_neg"),
            helper.make_node("Conv", [f"{stem}_neg", neg_slope.name], [f"{stem}_scaled"], name=f"{stem}_scaled", **dw),
            helper.make_node("Add", [f"{stem}_scaled", f"{stem}_pos"], [y], name=stem),
        ]
        replaced.add(slope_name)
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(added)
        used = {i for n in graph.node for i in n.input} | {i.name for i in graph.input} | {o.name for o in graph.output}
        keep = [i for i in graph.initializer if i.name in used or i.name not in replaced]  # drop slopes no node reads
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return count
