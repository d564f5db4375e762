"""Multiply-accumulates per LR input pixel, counted from the deployed graph itself.

For an ONNX bundle the count comes from the graph (so a pruned or re-parameterised
variant is counted as it ships): every Conv adds output elements x C_in/groups x k^2,
every ConvTranspose input elements x C_out/groups x k^2, every MatMul/Gemm M x K x N,
with shapes from ONNX shape inference at a fixed probe size. For OpenCV's TensorFlow
graphs the count is the sum of the convolution weights, valid because every layer of
ESPCN and FSRCNN runs on the LR grid (the last FSRCNN deconvolution scatters each LR
pixel through its whole kernel). Counts scale linearly with the frame's pixel count.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

_PROBE = 32  # LR probe side: large enough that 'same' padding has no edge effects on the count


def _dims(value_info: object) -> list[int] | None:
    shape = value_info.type.tensor_type.shape  # type: ignore[attr-defined]
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in shape.dim]
    return dims if dims and all(d > 0 for d in dims) else None


@functools.lru_cache(maxsize=64)
def _onnx_macs(path: str, mtime_ns: int) -> float | None:
    import onnx

    model = onnx.load(path)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        return None
    channels = dims[1].dim_value or 3
    for d, v in zip(dims, (1, channels, _PROBE, _PROBE), strict=True):
        d.Clear()
        d.dim_value = v
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        s = _dims(vi)
        if s is not None:
            shapes[vi.name] = s
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in inferred.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            w = shapes.get(node.input[1])
            ref = shapes.get(node.output[0] if node.op_type == "Conv" else node.input[0])
            if w is None or ref is None:
                return None
            # Conv: out elements x (C_in/g x k^2) = prod(out) x prod(W[1:]);
            # ConvTranspose: in elements x (C_out/g x k^2) = prod(in) x prod(W[1:]).
            total += math.prod(ref) * math.prod(w[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
            if a is None or out is None:
                return None
            total += math.prod(out) * a[-1]
    return total / (_PROBE * _PROBE)


def onnx_macs_per_lr_pixel(path: str | os.PathLike[str]) -> float | None:
    """MACs per LR input pixel of a single-input NCHW ONNX graph (None when shapes are unknown)."""
    p = Path(path)
    return _onnx_macs(str(p.resolve()), p.stat().st_mtime_ns)


def opencv_macs_per_lr_pixel(net: object) -> float | None:
    """MACs per LR pixel of an OpenCV ``dnn.Net`` whose layers all run on the LR grid."""
    total = 0
    for name in net.getLayerNames():  # type: ignore[attr-defined]
        try:
            layer = net.getLayer(name)  # type: ignore[attr-defined]
        except Exception:  # OpenCV 5 fails to re-create some parameterless layers (DepthToSpace)
            continue
        if layer.type in ("Convolution", "Deconvolution") and layer.blobs:
            total += math.prod(layer.blobs[0].shape[1:]) * layer.blobs[0].shape[0]
    return float(total) if total else None
