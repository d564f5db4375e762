"""Roofline estimates: how long a bundle's graph would take on a device nobody measured.

Two numbers per frame come from the ONNX graph itself (so a pruned, re-parameterised or
int8 variant is costed as it ships), with shapes from ONNX shape inference at the frame's
size:

- **MACs**: every Conv adds output elements x C_in/groups x k^2, every ConvTranspose input
  elements x C_out/groups x k^2, every MatMul/Gemm M x K x N;
- **bytes moved**: every layer reads its activation inputs and writes its output once, at
  the precision's width (fp32 4 bytes, fp16/bf16 2, int8 1), and reads its weights once.
  Element-wise ops that runtimes fuse into the producing convolution (ReLU, PReLU, Clip,
  Q/DQ, ...) move nothing of their own; a binary element-wise op (a residual Add) reads its
  second activation; views (Reshape, Squeeze) move nothing; anything else (DepthToSpace,
  Concat, Resize, ...) reads its inputs and writes its outputs.

The time is the sum over layers of ``max(2 x MACs / peak(precision), bytes / bandwidth)``
under the device profile's peak compute and memory bandwidth
(:class:`~sr_edge.devices.Hardware`), divided by an efficiency factor (how much of the
roofline a backend reaches at a precision), which :mod:`sr_edge.select` fits on the
machines that were measured. Every figure made here is an
estimate, and is labelled as one wherever it is shown.

Nothing here imports a runtime; :func:`graph_cost` imports ``onnx``.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SrEdgeError

# Bytes per element a runtime moves at each precision.
WIDTH: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}

_COMPUTE = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
# Fused into the producer by every runtime sr-edge deploys on: no traffic of their own.
_FUSED_UNARY = frozenset(
    {"Relu", "PRelu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu",
     "QuantizeLinear", "DequantizeLinear", "Cast", "Identity", "Dropout"}
)  # fmt: skip
_BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min"})
_VIEWS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Constant", "ConstantOfShape", "Gather"})


@dataclass(frozen=True)
class LayerCost:
    """One layer of a frame: its op, MACs, bytes moved and output channels."""

    name: str
    op: str
    macs: float
    bytes: float
    out_channels: int


@dataclass(frozen=True)
class GraphCost:
    """What one frame costs a graph: multiply-accumulates and bytes moved (at one precision)."""

    width: int  # LR input frame
    height: int
    precision: str
    macs: float
    activation_bytes: float  # activations read + written by every layer
    weight_bytes: float  # every weight read once
    peak_live_bytes: float  # the largest layer's inputs + output, plus all weights (a working-set floor)
    layers: tuple[LayerCost, ...] = ()

    @property
    def bytes(self) -> float:
        """Total bytes moved per frame."""
        return self.activation_bytes + self.weight_bytes

    @property
    def gops(self) -> float:
        """2 x MACs, in G(FL)OP per frame."""
        return 2.0 * self.macs / 1e9

    @property
    def intensity(self) -> float:
        """Operations per byte moved (the roofline's x axis)."""
        return 2.0 * self.macs / self.bytes if self.bytes else math.inf


@dataclass(frozen=True)
class Roofline:
    """The roofline time of one frame: the time of its compute-bound layers plus its memory-bound ones."""

    compute_s: float  # summed over the layers whose compute time exceeds their memory time
    memory_s: float  # summed over the others

    @property
    def seconds(self) -> float:
        """The frame's roofline time."""
        return self.compute_s + self.memory_s

    @property
    def bound(self) -> str:
        """``"compute"`` or ``"memory"``: which roof holds most of the frame's time."""
        return "compute" if self.compute_s >= self.memory_s else "memory"


def _dims(value_info: Any) -> list[int] | None:
    shape = value_info.type.tensor_type.shape
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in shape.dim]
    return dims if dims and all(d > 0 for d in dims) else None


@functools.lru_cache(maxsize=256)
def _cost(path: str, mtime_ns: int, width: int, height: int, precision: str) -> GraphCost:
    import onnx

    try:
        model = onnx.load(path)
    except Exception as e:  # a damaged file: onnx raises DecodeError and others
        raise SrEdgeError(f"{path}: not a readable ONNX graph ({type(e).__name__})") from None
    graph = model.graph
    inits = {i.name: list(i.dims) for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise SrEdgeError(f"{path}: roofline estimates need one N x C x H x W input")
    dims = inputs[0].type.tensor_type.shape.dim
    channels = dims[1].dim_value or 3
    for d, v in zip(dims, (1, channels, height, width), strict=True):
        d.Clear()
        d.dim_value = v
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = dict(inits)
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        s = _dims(vi)
        if s is not None:
            shapes[vi.name] = s
    # Constants made by nodes (a DequantizeLinear of an int8 weight) are weights, not activations.
    constant = set(inits)
    for node in inferred.graph.node:
        if node.op_type == "Constant" or (node.input and all(i in constant for i in node.input if i)):
            constant.update(node.output)

    w = WIDTH[precision]
    macs = act = weights = 0.0
    peak_layer = 0.0
    layers: list[LayerCost] = []

    def numel(name: str) -> float:
        s = shapes.get(name)
        if s is None:
            raise SrEdgeError(f"{path}: shape inference left {name!r} unknown; cannot cost the graph")
        return float(math.prod(s))

    for node in inferred.graph.node:
        op = node.op_type
        if (node.output and node.output[0] in constant) or op in _VIEWS or op in _FUSED_UNARY:
            continue
        ins = [i for i in node.input if i and i not in constant]
        consts = [i for i in node.input if i and i in constant]
        outs = [o for o in node.output if o]
        out_shape = shapes.get(outs[0]) if outs else None
        out_channels = out_shape[1] if out_shape and len(out_shape) > 1 else 1
        layer_macs = layer_weights = 0.0
        if op in _COMPUTE:
            wshape = shapes.get(node.input[1]) or [0]
            if op == "Conv":
                layer_macs = numel(outs[0]) * math.prod(wshape[1:])
            elif op == "ConvTranspose":
                layer_macs = numel(node.input[0]) * math.prod(wshape[1:])
            else:
                layer_macs = numel(outs[0]) * (shapes.get(node.input[0]) or [0])[-1]
            moved = (sum(numel(i) for i in ins) + sum(numel(o) for o in outs)) * w
            layer_weights = sum(numel(c) for c in consts) * w
            weights += layer_weights
            peak_layer = max(peak_layer, moved)
            moved += layer_weights
        elif op in _BINARY:
            # the first operand arrives fused from its producer; the second is read
            moved = numel(ins[1]) * w if len(ins) == 2 else 0.0
        else:
            moved = (sum(numel(i) for i in ins) + sum(numel(o) for o in outs)) * w
            peak_layer = max(peak_layer, moved)
        macs += layer_macs
        act += moved - layer_weights
        layers.append(LayerCost(node.name or outs[0], op, layer_macs, moved, int(out_channels)))
    return GraphCost(width, height, precision, macs, act, weights, peak_layer + weights, tuple(layers))


def graph_cost(path: str | os.PathLike[str], width: int, height: int, precision: str) -> GraphCost:
    """MACs and bytes moved by one ``width`` x ``height`` frame through the ONNX graph at ``path``."""
    if precision not in WIDTH:
        raise SrEdgeError(f"precision must be one of {', '.join(WIDTH)}, got {precision!r}")
    p = Path(path)
    if p.is_dir():
        p = p / "model.onnx"
    if not p.is_file():
        raise SrEdgeError(f"{p}: no such ONNX graph")
    return _cost(str(p.resolve()), p.stat().st_mtime_ns, int(width), int(height), precision)


def roofline(cost: GraphCost, peak_gops: float, bandwidth_gbs: float, lanes: int = 1) -> Roofline:
    """The roofline time of ``cost`` under a peak (G ops/s at its precision) and a bandwidth (GB/s).

    Layer by layer: each layer takes the larger of its compute and its memory time, and the
    frame is their sum (a graph is not one kernel: a memory-bound layer cannot hide behind a
    compute-bound one). ``lanes`` > 1 charges each layer's output channels rounded up to a
    multiple of ``lanes`` (the vector or tile width its kernels block channels by), so a
    4-channel convolution costs like a ``lanes``-channel one.
    """
    if not peak_gops > 0 or not bandwidth_gbs > 0:
        raise SrEdgeError(f"peak and bandwidth must be positive, got {peak_gops!r} and {bandwidth_gbs!r}")
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise SrEdgeError(f"lanes must be a positive integer, got {lanes!r}")
    layers = cost.layers or (LayerCost("graph", "graph", cost.macs, cost.bytes, lanes),)
    compute = memory = 0.0
    for layer in layers:
        padded = -(-layer.out_channels // lanes) * lanes / max(layer.out_channels, 1)
        c = 2.0 * layer.macs * padded / (peak_gops * 1e9)
        m = layer.bytes / (bandwidth_gbs * 1e9)
        # Attribute the layer's time to whichever roof bounds it.
        if c >= m:
            compute += c
        else:
            memory += m
    return Roofline(compute_s=compute, memory_s=memory)
