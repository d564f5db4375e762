"""Insert int8 QuantizeLinear / DequantizeLinear nodes into a float SR graph: one placement per runtime.

The settings come from one model (calibrated, or fine-tuned with QAT): for each
convolution, the grid of its input, ``(q + k) * s`` for int8 ``q`` (``k = 0``: symmetric;
``k = 128``: ``[0, 255] * s``, for the image and Relu outputs, which are never negative),
and one scale per output channel of its weights (:class:`LayerQuant`). Each runtime fuses
its own QDQ pattern into integer kernels (DESIGN.md), so the same grids are written in three
placements that compute the same values:

``inputs`` (TensorRT; ``model.onnx``)
    symmetric int8 (zero point 0) Q/DQ on each int8 convolution's input, weights stored
    as int8 with a per-channel DequantizeLinear on axis 0, bias and output in float: what
    TensorRT's explicit quantisation wants and ``sr-edge check-trt`` accepts. An offset
    grid is written ``Sub(k * s)`` -> ``Pad(-k * s)`` -> Q/DQ -> Conv (no padding, bias +
    ``k * s * sum(w)``): symmetric, and exact at the image borders.
``openvino`` (``model-openvino.onnx``)
    the same, with an offset grid as a uint8 zero point ``128 - k`` (``[0, 255] * s`` is
    plain uint8, zero point 0: the unsigned activations OpenVINO's CPU kernels take
    natively) instead of Sub and Pad.
``ort`` (ONNX Runtime CPU; ``model-ort.onnx``)
    every grid as uint8 (ORT's U8S8 kernels; QLinearConv wants one type in and out): a
    symmetric grid is uint8 with zero point 128, exactly. Each conv that runs faster as a
    QLinearConv also gets a quantised output and an int32 bias (ORT fuses DQ -> Conv -> Q
    only with both): where its output feeds a Relu whose readers share one grid, the
    output is quantised on that grid with zero point 0 and the Relu dropped (a
    zero-point-0 uint8 grid clamps negatives, which is the Relu); where it is the network's
    output (up to a pixel shuffle), to [0, 1] in steps of 1/255 (the valid range, as the
    uint8 image will be); else on the conv's own calibrated output grid. Convolutions that
    ORT runs slower in int8 than in float (one input channel, a handful of outputs:
    :func:`qlinear_pays`) keep a float output: ORT runs them as float convolutions on the
    same quantised inputs and weights.

Layers marked ``int8=False`` (``--max-drop-db``) get no QDQ and run in float.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import SrEdgeError

if TYPE_CHECKING:
    import onnx

Placement = Literal["inputs", "openvino", "ort"]
PLACEMENTS: tuple[Placement, ...] = ("inputs", "openvino", "ort")
WEIGHT_QMAX = 127
OFFSET_UNSIGNED = 128  # the grid (q + 128) * s: [0, 255] * s, a uint8 grid with zero point 0
OUTPUT_STEP = 1.0 / 255.0  # the ORT placement's grid for the network output: the uint8 image's
# Ops between a conv and the graph output that keep it the network's output (a pixel shuffle)
_REARRANGE = frozenset({"DepthToSpace", "Reshape", "Transpose", "Identity"})


@dataclass(frozen=True)
class LayerQuant:
    """The int8 settings of one convolution, as the model that learnt them holds them.

    ``weight`` is the float kernel the graph holds for the layer: it identifies the Conv
    node (by value; the exporter keeps kernels as they are). The input grid is
    ``(q + input_offset) * input_scale`` for int8 ``q``; weights ``q * weight_scales[c]``
    for ``q`` in [-127, 127]. ``output_scale``: the conv's own calibrated output grid
    (symmetric), used by the ``ort`` placement where no reader's grid serves. ``qlinear``:
    whether the ``ort`` placement quantises the conv's output (so ORT fuses a QLinearConv).
    """

    name: str
    weight: np.ndarray
    input_scale: float
    weight_scales: np.ndarray
    input_offset: int = 0
    int8: bool = True
    output_scale: float | None = None
    qlinear: bool = True

    def __post_init__(self) -> None:
        w = np.asarray(self.weight, dtype=np.float32)
        s = np.asarray(self.weight_scales, dtype=np.float32).reshape(-1)
        if s.shape[0] != w.shape[0]:
            raise ValueError(f"{self.name}: {s.shape[0]} weight scales for {w.shape[0]} output channels")
        scales = [float(self.input_scale)] + ([float(self.output_scale)] if self.output_scale is not None else [])
        if not (np.isfinite(s).all() and (s > 0).all() and all(np.isfinite(v) and v > 0 for v in scales)):
            raise ValueError(f"{self.name}: quantisation scales must be finite and positive")
        if not -127 <= int(self.input_offset) <= 128:  # ORT's uint8 zero point 128 - k
            raise ValueError(f"{self.name}: input offset {self.input_offset} outside [-127, 128]")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "weight_scales", s)
        object.__setattr__(self, "input_offset", int(self.input_offset))

    @property
    def grid(self) -> tuple[float, int]:
        """(scale as float32, offset): layers with equal grids can share one input Q/DQ."""
        return float(np.float32(self.input_scale)), self.input_offset


@dataclass
class QdqReport:
    """What the pass did, for the manifest: int8 and float layers, quantised outputs."""

    placement: Placement
    nodes: dict[str, str] = field(default_factory=dict)
    int8_layers: list[str] = field(default_factory=list)
    float_layers: list[str] = field(default_factory=list)
    quantised_outputs: list[str] = field(default_factory=list)
    own_output_grids: list[str] = field(default_factory=list)  # outputs on the layer's own output_scale
    float_outputs: list[str] = field(default_factory=list)
    relu_folded: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "placement": self.placement,
            "int8_layers": list(self.int8_layers),
            "float_layers": list(self.float_layers),
            "quantised_outputs": list(self.quantised_outputs),
            "own_output_grids": list(self.own_output_grids),
            "float_outputs": list(self.float_outputs),
            "relu_folded_into_uint8": self.relu_folded,
        }


def qlinear_pays(kernel_shape: Sequence[int]) -> bool:
    """Whether ONNX Runtime's CPU QLinearConv beats its float (NCHWc) convolution for a kernel.

    Measured on the zoo (docs/compression.md, ORT 1.32 profiles at 960x540): with a
    reduction of under 64 multiply-adds per output (ESPCN's first conv: one input channel,
    5x5) the int8 kernel took 2.2x the float one's time, with 4 outputs (its last) 1.8x;
    its 64 -> 32 3x3 ran 3x faster.
    """
    cout, cin = int(kernel_shape[0]), int(kernel_shape[1])
    reduction = cin * int(np.prod(kernel_shape[2:]))
    return reduction >= 64 and cout >= 16


def quantize_weight(weight: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """int8 weights, symmetric per output channel: ``clamp(round_half_even(w / s), -127, 127)``."""
    s = np.asarray(scales, np.float32).reshape(-1, *([1] * (weight.ndim - 1)))
    return np.clip(np.round(np.asarray(weight, np.float32) / s), -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8)


def find_convs(model: onnx.ModelProto, layers: Sequence[LayerQuant]) -> dict[str, Any]:
    """Layer name -> its Conv node, matched by kernel value (equal kernels: graph order)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits]
    kernels = {id(n): numpy_helper.to_array(inits[n.input[1]]) for n in convs}
    taken: set[int] = set()
    found: dict[str, Any] = {}
    for layer in layers:
        match = next(
            (
                n
                for n in convs
                if id(n) not in taken
                and kernels[id(n)].shape == layer.weight.shape
                and np.allclose(kernels[id(n)], layer.weight, rtol=1e-5, atol=1e-7)
            ),
            None,
        )
        if match is None:
            raise SrEdgeError(
                f"layer {layer.name}: no Conv in the exported graph holds its kernel {tuple(layer.weight.shape)}; "
                "the graph and the quantised model disagree (export both from the same weights)"
            )
        taken.add(id(match))
        found[layer.name] = match
    return found


class _Graph:
    """The graph being rewritten: unique names, new initializers, node insertions."""

    def __init__(self, model: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        self.model = model
        self.inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.names = set(self.inits) | {o for n in model.graph.node for o in n.output}
        self.names |= {i.name for i in model.graph.input}
        self.new_inits: list[Any] = []
        self.before: dict[int, list[Any]] = {}
        self.after: dict[int, list[Any]] = {}
        self.readers: dict[str, list[Any]] = {}
        for n in model.graph.node:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in model.graph.output}

    def name(self, stem: str) -> str:
        base = stem.replace("/", "_").replace(".", "_")
        candidate, i = base, 1
        while candidate in self.names:
            i += 1
            candidate = f"{base}_{i}"
        self.names.add(candidate)
        return candidate

    def const(self, stem: str, value: Any) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.new_inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, **attrs: Any) -> tuple[Any, str]:
        from onnx import helper

        out = self.name(stem)
        return helper.make_node(op, inputs, [out], name=out, **attrs), out

    def qdq(self, tensor: str, scale: float, zero: int, unsigned: bool, stem: str) -> tuple[list[Any], str]:
        """(Q and DQ nodes, the dequantised tensor) for a per-tensor pair."""
        s = self.const(f"{stem}_scale", np.array(scale, np.float32))
        z = self.const(f"{stem}_zero", np.array(zero, np.uint8 if unsigned else np.int8))
        q, qn = self.node("QuantizeLinear", [tensor, s, z], f"{stem}_q")
        dq, dqn = self.node("DequantizeLinear", [qn, s, z], f"{stem}_dq")
        return [q, dq], dqn


def _conv_pads(node: Any) -> list[int]:
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto not in ("NOTSET", "VALID"):
        raise SrEdgeError(f"{node.name}: auto_pad {auto} with an offset input grid is not supported")
    return [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]


def _set_attr(node: Any, name: str, value: Any) -> None:
    from onnx import helper

    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
    node.attribute.append(helper.make_attribute(name, value))


def _output_path(g: _Graph, tensor: str) -> bool:
    """Whether ``tensor`` reaches the graph output only through rearranging ops (a pixel shuffle)."""
    seen = 0
    while tensor not in g.outputs:
        rs = g.readers.get(tensor, [])
        if len(rs) != 1 or rs[0].op_type not in _REARRANGE or seen > 4:
            return False
        tensor, seen = rs[0].output[0], seen + 1
    return True


def insert_qdq(
    model: onnx.ModelProto, layers: Sequence[LayerQuant], placement: Placement
) -> tuple[onnx.ModelProto, QdqReport]:
    """A copy of the float graph ``model`` with QDQ nodes for ``layers`` in ``placement``."""
    import onnx

    if placement not in PLACEMENTS:
        raise SrEdgeError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    conv_of = find_convs(out, layers)
    g = _Graph(out)
    report = QdqReport(placement, nodes={k: v.name for k, v in conv_of.items()})
    int8 = [layer for layer in layers if layer.int8]
    report.int8_layers = [layer.name for layer in int8]
    report.float_layers = [layer.name for layer in layers if not layer.int8]
    layer_at = {id(conv_of[layer.name]): layer for layer in int8}
    ort = placement == "ort"
    zero_points = placement != "inputs"  # offset grids as zero points (OpenVINO, ORT), not Sub + Pad

    # 1. inputs. ``inputs``: symmetric int8, an offset grid as Sub -> Pad -> Q/DQ; ``openvino``:
    # int8 for a symmetric grid, uint8 (zero point 128 - k) for an offset one; ``ort``: uint8
    input_dq: dict[tuple[str, float, int], str] = {}
    for layer in int8:
        node = conv_of[layer.name]
        src = node.input[0]
        scale, k = layer.grid
        if zero_points or k == 0:
            key = (src, scale, k)
            if key not in input_dq:
                unsigned = ort or k != 0
                nodes, dq = g.qdq(src, scale, 128 - k if unsigned else 0, unsigned, f"{layer.name}_in")
                g.before.setdefault(id(node), []).extend(nodes)
                input_dq[key] = dq
            node.input[0] = input_dq[key]
            continue
        shift = np.float32(k) * np.float32(scale)
        sub, shifted = g.node(
            "Sub", [src, g.const(f"{layer.name}_in_offset", np.array(shift, np.float32))], f"{layer.name}_in_centred"
        )
        pads = _conv_pads(node)
        pad_attr = np.array([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]], np.int64)
        pad, padded = g.node(
            "Pad",
            [
                shifted,
                g.const(f"{layer.name}_in_pads", pad_attr),
                g.const(f"{layer.name}_in_pad_value", np.array(-shift, np.float32)),
            ],
            f"{layer.name}_in_padded",
            mode="constant",
        )
        nodes, dq = g.qdq(padded, scale, 0, False, f"{layer.name}_in")
        g.before.setdefault(id(node), []).extend([sub, pad, *nodes])
        node.input[0] = dq
        _set_attr(node, "pads", [0, 0, 0, 0])

    # 2. weights: int8 + per-channel DQ on axis 0. An offset input adds k*s*sum(w) to the bias
    # (``inputs``); ``ort`` quantises the bias of every QLinearConv to int32 at s_in * s_w.
    for layer in int8:
        node = conv_of[layer.name]
        kernel = g.inits[node.input[1]].astype(np.float32)
        wq = quantize_weight(kernel, layer.weight_scales)
        if ort and not layer.qlinear:
            # a float conv on ORT: the int8 weights' own values as a float constant, which ORT's
            # NCHWc layout pass takes (a DequantizeLinear on the weights would keep the conv out of it)
            w_deq = (wq.astype(np.float32) * layer.weight_scales.reshape(-1, 1, 1, 1)).astype(np.float32)
            node.input[1] = g.const(f"{layer.name}_weight_int8_values", w_deq)
            continue
        s = g.const(f"{layer.name}_weight_scale", layer.weight_scales)
        dq_w, dq_w_name = g.node(
            "DequantizeLinear",
            [
                g.const(f"{layer.name}_weight_int8", wq),
                s,
                g.const(f"{layer.name}_weight_zero", np.zeros(wq.shape[0], np.int8)),
            ],
            f"{layer.name}_weight_dq",
            axis=0,
        )
        g.before.setdefault(id(node), []).append(dq_w)
        node.input[1] = dq_w_name
        scale, k = layer.grid
        bias = (
            g.inits[node.input[2]].astype(np.float64)
            if len(node.input) > 2 and node.input[2]
            else np.zeros(wq.shape[0])
        )
        if not zero_points and k != 0:
            w_deq = wq.astype(np.float64) * layer.weight_scales.astype(np.float64).reshape(-1, 1, 1, 1)
            bias = bias + float(np.float32(k) * np.float32(scale)) * w_deq.reshape(w_deq.shape[0], -1).sum(axis=1)
            name = g.const(f"{layer.name}_bias_centred", bias.astype(np.float32))
            if len(node.input) > 2:
                node.input[2] = name
            else:
                node.input.append(name)
        elif ort and layer.qlinear:
            bscale = (np.float32(scale) * layer.weight_scales).astype(np.float32)
            bq = np.clip(np.round(bias / bscale.astype(np.float64)), -(2**31), 2**31 - 1).astype(np.int32)
            dq_b, dq_b_name = g.node(
                "DequantizeLinear",
                [
                    g.const(f"{layer.name}_bias_int32", bq),
                    g.const(f"{layer.name}_bias_scale", bscale),
                    g.const(f"{layer.name}_bias_zero", np.zeros(bq.shape[0], np.int32)),
                ],
                f"{layer.name}_bias_dq",
                axis=0,
            )
            g.before.setdefault(id(node), []).append(dq_b)
            if len(node.input) > 2:
                node.input[2] = dq_b_name
            else:
                node.input.append(dq_b_name)

    # 3. ort: the outputs of the QLinearConv candidates
    drop: set[int] = set()
    if ort:
        for layer in int8:
            node = conv_of[layer.name]
            if not layer.qlinear:
                report.float_outputs.append(layer.name)
                continue
            y = node.output[0]
            rs = g.readers.get(y, [])
            relu = rs[0] if len(rs) == 1 and rs[0].op_type == "Relu" else None
            via = relu.output[0] if relu is not None else y
            readers = g.readers.get(via, [])
            grids = {layer_at[id(r)].grid for r in readers if id(r) in layer_at}
            served = (
                bool(readers) and all(id(r) in layer_at for r in readers) and len(grids) == 1 and via not in g.outputs
            )
            stale: str | None = None
            if served:
                scale, k = next(iter(grids))
                if relu is not None and k not in (0, OFFSET_UNSIGNED):  # the Relu folds into zero point 0
                    served = False
                else:
                    zero = 0 if relu is not None else 128 - k
                    stale = input_dq.get((via, scale, k))
            if not served:
                relu = None
                via = y
                if _output_path(g, y):
                    scale, zero = OUTPUT_STEP, 0
                elif layer.output_scale is not None:
                    scale, zero = float(layer.output_scale), 128
                    report.own_output_grids.append(layer.name)
                else:
                    report.float_outputs.append(layer.name)
                    continue
            nodes, dq = g.qdq(y, scale, zero, True, f"{layer.name}_out")
            g.after.setdefault(id(node), []).extend(nodes)
            for r in g.readers.get(via, []) + ([n for n in out.graph.node if stale in n.input] if stale else []):
                for i, name in enumerate(r.input):
                    if name == via or (stale is not None and name == stale):
                        r.input[i] = dq
            if via in g.outputs:  # pragma: no cover - excluded above; a graph output keeps its name
                raise SrEdgeError(f"{layer.name}: cannot quantise the graph output itself")
            if relu is not None:
                drop.add(id(relu))
                report.relu_folded += 1
            report.quantised_outputs.append(layer.name)
        # a conv whose output path is the graph output: DQ -> DepthToSpace keeps the name
        for o in out.graph.output:
            if o.name in {n.output[0] for n in out.graph.node if id(n) in drop}:  # pragma: no cover
                raise SrEdgeError("a dropped Relu was the graph output")

    ordered: list[Any] = []
    for n in out.graph.node:
        if id(n) in drop:
            continue
        ordered.extend(g.before.get(id(n), []))
        ordered.append(n)
        ordered.extend(g.after.get(id(n), []))
    ordered = _prune_dead(ordered, g.outputs)
    available = {i.name for i in out.graph.input} | set(g.inits) | {t.name for t in g.new_inits}
    del out.graph.node[:]
    out.graph.node.extend(_toposort(ordered, available))
    out.graph.initializer.extend(g.new_inits)
    used = {i for n in out.graph.node for i in n.input}
    keep = [t for t in out.graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    del out.graph.value_info[:]
    if any(o.domain in ("", "ai.onnx") and o.version < 13 for o in out.opset_import):
        raise SrEdgeError("per-channel QDQ needs opset 13 or later; export with --opset 17 or more")
    onnx.checker.check_model(out)
    return out, report


def _prune_dead(nodes: list[Any], outputs: set[str]) -> list[Any]:
    while True:
        read = {i for n in nodes for i in n.input} | outputs
        keep = [n for n in nodes if any(o in read for o in n.output)]
        if len(keep) == len(nodes):
            return keep
        nodes = keep


def _toposort(nodes: list[Any], available: set[str]) -> list[Any]:
    ready = set(available) | {""}
    pending, ordered = list(nodes), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # pragma: no cover - the pass only rewires forward
            raise SrEdgeError("QDQ insertion produced a graph with a cycle")
        pending = rest
    return ordered
