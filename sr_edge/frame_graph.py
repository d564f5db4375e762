"""The deployment frame path of Y-channel models: the colour work inside the ONNX graph.

A Y model's bundle maps the Y plane to the Y plane. Around it, every deployed frame needs
uint8 RGB -> float YCbCr, bicubic chroma, YCbCr -> RGB and rounding back to uint8; done in
numpy and Pillow that was about half of a 1080p frame (issue 21). :func:`frame_graph` puts
that work into the graph, so the runtime's own kernels and threads run it with the network:

    frame (uint8, N x H x W x 3, RGB)
      -> Cast, Transpose -> 1x1 Conv: MATLAB ``rgb2ycbcr`` (studio range, [0, 1])
      -> Y  -> the bundle's network -> Y'
      -> CbCr -> Resize (cubic, a = -0.5, pixel centres, taps outside renormalised: Pillow's
         BICUBIC, which the numpy path uses)
      -> Concat [Y', CbCr'] -> 1x1 Conv: ``ycbcr2rgb`` on 0-255 -> Round, Clip -> uint8
      -> frame_sr (uint8, N x sH x sW x 3, RGB)

The network's nodes are copied unchanged (an int8 bundle keeps its QDQ placement). The
result differs from :class:`~sr_edge.upscale.NetworkUpscaler`'s numpy path only by float
rounding, so a pixel sometimes lands one grey level off; tests/test_frame_graph.py bounds
the share and the PSNR-Y difference. Nothing here imports torch.

:func:`split_frame_graph` cuts a frame graph at the network's input and output (recorded in
its metadata) into colour in, network and colour out, for a runtime that would otherwise run
the colour work in a reduced precision (OpenVINO under a bf16 hint).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from .data.color import _INVERSE, _MATRIX, _OFFSET
from .errors import SrEdgeError
from .types import check_scale

if TYPE_CHECKING:
    import onnx

FRAME_INPUT = "frame"
FRAME_OUTPUT = "frame_sr"
FRAME_CHECK = "frame_net_sum"  # the network output's sum: NaN or Inf there means a broken model
NET_INPUT_KEY = "sr_edge.frame.net_input"  # metadata: the network's input tensor inside the frame graph
NET_OUTPUT_KEY = "sr_edge.frame.net_output"  # metadata: its output (in phase space where it ends in a shuffle)
_PREFIX = "frame_path_"


def colour_constants() -> dict[str, np.ndarray]:
    """The two 1x1 convolutions (weights, biases) of the frame graph, float32.

    In: RGB in [0, 1] -> YCbCr in [0, 1] (``rgb_to_ycbcr``). Out: YCbCr in
    [0, 1] -> RGB on 0-255 (``ycbcr_planes_to_image`` with ``peak`` 255, before rounding).
    """
    w_in = (_MATRIX / 255.0).reshape(3, 3, 1, 1)
    b_in = _OFFSET / 255.0
    m = _INVERSE * 255.0 * 255.0  # rows R, G, B; columns Y, Cb, Cr
    b_out = -(m @ (_OFFSET / 255.0))
    return {
        "w_in": w_in.astype(np.float32),
        "b_in": b_in.astype(np.float32),
        "w_out": m.reshape(3, 3, 1, 1).astype(np.float32),
        "b_out": b_out.astype(np.float32),
    }


def cubic_weights(t: float, a: float = -0.5) -> np.ndarray:
    """The 4 taps of the cubic convolution kernel (Keys, ``a``) at fraction ``t`` in [0, 1)."""
    d = np.array([1.0 + t, t, 1.0 - t, 2.0 - t])
    w = np.where(d <= 1, (a + 2) * d**3 - (a + 3) * d**2 + 1, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a)
    return w / w.sum()


def chroma_kernel(scale: int) -> np.ndarray:
    """float32 ``(scale**2, 1, 5, 5)``: bicubic upscaling by ``scale`` (pixel centres aligned, as
    MATLAB and Pillow) written as one 5 x 5 filter per output phase over the LR pixel and its
    two neighbours each side. Output pixel ``o = scale * i + p`` sits at LR coordinate
    ``i + (p + 0.5) / scale - 0.5``, between the taps ``i - 2 .. i + 2``."""
    taps = np.zeros((scale, 5))
    for p in range(scale):
        d = (p + 0.5) / scale - 0.5
        first = -2 if d < 0 else -1  # floor(x) - 1 relative to i
        frac = d + 1 if d < 0 else d
        taps[p, first + 2 : first + 6] = cubic_weights(frac)
    k = np.einsum("ay,bx->abyx", taps, taps).reshape(scale * scale, 1, 5, 5)
    return k.astype(np.float32)


_ELEMENTWISE = frozenset({"Clip", "Relu", "Identity"})


def _final_shuffle(nodes: list[Any], out: str, scale: int) -> tuple[list[Any], str] | None:
    """Where ``out`` is ``DepthToSpace(x, scale)`` followed only by element-wise ops whose other
    inputs are constants (ECBSR's Clip), the nodes with the shuffle removed, the ops applied to
    ``x`` instead, and the name of the result: the network's output in phase space
    (N x scale^2 x H x W; one channel, so DCR and CRD orders agree). Otherwise ``None``."""
    from onnx import helper

    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    consumers: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    chain: list[int] = []
    name = out
    while name in producer:
        i = producer[name]
        node = nodes[i]
        if node.op_type == "DepthToSpace":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("blocksize") != scale or consumers.get(node.output[0], 0) > 1:
                return None
            kept = [n for j, n in enumerate(nodes) if j != i]
            if not chain:
                return kept, node.input[0]
            first = nodes[chain[-1]]
            first.input[0] = node.input[0]  # the op nearest the shuffle now reads the phases
            return kept, out
        if node.op_type not in _ELEMENTWISE or consumers.get(node.input[0], 0) > 1:
            return None
        chain.append(i)
        name = node.input[0]
    return None


def _t(name: str) -> str:
    return _PREFIX + name


def _conv(inputs: list[str], output: str, k: int, name: str, **attrs: Any) -> Any:
    """A ``k`` x ``k`` Conv node of the frame path."""
    from onnx import helper

    return helper.make_node("Conv", inputs, [output], kernel_shape=[k, k], name=_t(name), **attrs)


def frame_graph(net: onnx.ModelProto, scale: int, *, fused: bool = False, transpose: str = "axes") -> onnx.ModelProto:
    """The uint8 RGB frame graph around a Y-channel network graph (1 input, 1 output, 1 channel).

    ``fused`` (networks that end in a pixel shuffle; others take the HR path): no Split and no
    Concat. Y comes from its own 1x1 conv of the RGB; the chroma's whole share of the output RGB
    (rgb2ycbcr's Cb and Cr rows, the bicubic phases, ycbcr2rgb's Cb and Cr columns: all linear)
    is one 5x5 conv of the edge-padded RGB, and the Y phases join it through a 1x1 conv and an
    Add. ``transpose``: the uint8 phases to NHWC as three single-axis transposes (``"axes"``:
    ONNX Runtime's fast path) or one 6-D transpose (``"6d"``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scale = check_scale(scale)
    if transpose not in ("axes", "6d"):
        raise ValueError(f"transpose must be 'axes' or '6d', got {transpose!r}")
    g = net.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1:
        raise SrEdgeError(
            f"the frame path needs a graph with one input and one output, got {len(inputs)} and {len(g.output)}"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or (dims[1].HasField("dim_value") and dims[1].dim_value != 1):
        raise SrEdgeError("the frame path is for Y-channel networks (input N x 1 x H x W)")
    net_in, net_out = inputs[0].name, g.output[0].name
    opset = max((o.version for o in net.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        raise SrEdgeError(f"the frame path needs ONNX opset 13 or newer, the graph has {opset}; re-export it")
    names = {n for node in g.node for n in (*node.input, *node.output)} | inits
    if any(n.startswith(_PREFIX) for n in names) or FRAME_INPUT in names or FRAME_OUTPUT in names:
        raise SrEdgeError("the network graph already uses the frame path's tensor names")

    t = _t
    c = colour_constants()
    k = chroma_kernel(scale)
    consts: dict[str, np.ndarray] = {
        t("unit"): np.array(1.0 / 255.0, np.float32),
        t("one"): np.array(1.0, np.float32),
        t("zero"): np.array(0, np.uint8),
        t("pads"): np.array([0, 0, 2, 2, 0, 0, 2, 2], np.int64),
    }
    # uint8 NHWC -> NCHW (1 byte a value moved), then [0, 1] floats (one pass: DequantizeLinear)
    nodes: list[Any] = [
        helper.make_node("Transpose", [FRAME_INPUT], [t("rgb_u8")], perm=[0, 3, 1, 2], name=t("to_nchw")),
        helper.make_node("DequantizeLinear", [t("rgb_u8"), t("unit"), t("zero")], [t("rgb")], name=t("to_unit")),
    ]
    body = [copy.deepcopy(n) for n in g.node]  # _final_shuffle rewires nodes: the caller's graph stays as it was
    phases = _final_shuffle(body, net_out, scale)
    ss = scale * scale
    if phases is not None and fused:
        body, y_phases = phases
        w_out = c["w_out"].reshape(3, 3)  # rows R, G, B; columns Y, Cb, Cr
        w_in = c["w_in"].reshape(3, 3)  # rows Y, Cb, Cr; columns R, G, B
        # output channel (colour o, phase p) = sum over Cb, Cr of w_out[o, j] * K_p * (w_in[j] . rgb + b_in[j]);
        # each K_p sums to 1, so the biases pass through it
        chroma = np.einsum("oj,jc,pyx->opcyx", w_out[:, 1:], w_in[1:], k[:, 0]).reshape(3 * ss, 3, 5, 5)
        consts[t("w_y")] = w_in[:1].reshape(1, 3, 1, 1)
        consts[t("b_y")] = c["b_in"][:1]
        consts[t("w_chroma")] = chroma.astype(np.float32)
        consts[t("b_chroma")] = np.repeat(c["b_out"] + w_out[:, 1:] @ c["b_in"][1:], ss).astype(np.float32)
        consts[t("w_y_out")] = np.kron(w_out[:, :1], np.eye(ss)).reshape(3 * ss, ss, 1, 1).astype(np.float32)
        nodes += [
            _conv([t("rgb"), t("w_y"), t("b_y")], net_in, 1, "y"),
            helper.make_node("Pad", [t("rgb"), t("pads")], [t("rgb_pad")], mode="edge", name=t("chroma_pad")),
            _conv([t("rgb_pad"), t("w_chroma"), t("b_chroma")], t("chroma_rgb"), 5, "chroma"),
            *body,
            _conv([y_phases, t("w_y_out")], t("y_rgb"), 1, "y_out"),
            helper.make_node("Add", [t("y_rgb"), t("chroma_rgb")], [t("rgb_phases")], name=t("to_rgb")),
        ]
        checked = y_phases
    else:
        consts[t("w_in")], consts[t("b_in")] = c["w_in"], c["b_in"]
        consts[t("split")] = np.array([1, 2], np.int64)
        consts[t("chroma_w")] = np.concatenate([k, k])  # Cb's phases, then Cr's (group 2)
        nodes += [
            _conv([t("rgb"), t("w_in"), t("b_in")], t("ycc"), 1, "ycbcr"),
            helper.make_node("Split", [t("ycc"), t("split")], [net_in, t("cbcr")], axis=1, name=t("split_y")),
            # bicubic chroma as a sub-pixel convolution: s * s phases of 5 x 5 taps per plane,
            # then DepthToSpace; borders replicated (Pad edge)
            helper.make_node("Pad", [t("cbcr"), t("pads")], [t("cbcr_pad")], mode="edge", name=t("chroma_pad")),
            _conv([t("cbcr_pad"), t("chroma_w")], t("cbcr_phases"), 5, "chroma", group=2),
        ]
        if phases is not None:
            # the network ends in a pixel shuffle (and element-wise ops, which commute with it):
            # the colour work runs in its phase space at LR, and one uint8 shuffle makes the frame
            body, y_phases = phases
            checked = y_phases
            m = np.kron(c["w_out"].reshape(3, 3), np.eye(ss, dtype=np.float32))
            consts[t("w_phase")] = m.reshape(3 * ss, 3 * ss, 1, 1).astype(np.float32)
            consts[t("b_phase")] = np.repeat(c["b_out"], ss).astype(np.float32)
            nodes += [
                *body,
                helper.make_node("Concat", [y_phases, t("cbcr_phases")], [t("ycc_phases")], axis=1, name=t("join")),
                _conv([t("ycc_phases"), t("w_phase"), t("b_phase")], t("rgb_phases"), 1, "to_rgb"),
            ]
        else:
            checked = net_out
            consts[t("w_out")], consts[t("b_out")] = c["w_out"], c["b_out"]
            nodes += [
                helper.make_node(
                    "DepthToSpace", [t("cbcr_phases")], [t("cbcr_up")], blocksize=scale, mode="CRD", name=t("chroma_up")
                ),
                *body,
                helper.make_node("Concat", [net_out, t("cbcr_up")], [t("ycc_up")], axis=1, name=t("join")),
                _conv([t("ycc_up"), t("w_out"), t("b_out")], t("rgb_up"), 1, "to_rgb"),
                # round half to even, clip to 0-255 and cast in one pass
                helper.make_node(
                    "QuantizeLinear", [t("rgb_up"), t("one"), t("zero")], [t("out_u8")], name=t("to_uint8")
                ),
                helper.make_node("Transpose", [t("out_u8")], [FRAME_OUTPUT], perm=[0, 2, 3, 1], name=t("to_nhwc")),
            ]
    if phases is not None:
        nodes.append(
            helper.make_node(
                "QuantizeLinear", [t("rgb_phases"), t("one"), t("zero")], [t("u8_phases")], name=t("to_uint8")
            )
        )
        nodes += _phases_to_nhwc(t("u8_phases"), scale, transpose, consts)
    # one cheap pass that any NaN or Inf in the network's output makes non-finite (the uint8 frame
    # would hide them as black or white), checked by NetworkUpscaler as on the numpy path
    nodes.append(helper.make_node("ReduceSum", [checked], [FRAME_CHECK], keepdims=0, name=t("check")))
    frame_in = helper.make_tensor_value_info(FRAME_INPUT, TensorProto.UINT8, ["batch", "height", "width", 3])
    frame_out = helper.make_tensor_value_info(
        FRAME_OUTPUT, TensorProto.UINT8, ["batch", f"{scale}*height", f"{scale}*width", 3]
    )
    graph = helper.make_graph(
        nodes,
        f"{g.name or 'net'}_frame",
        [frame_in],
        [frame_out, helper.make_tensor_value_info(FRAME_CHECK, TensorProto.FLOAT, [])],
        initializer=[*g.initializer, *(numpy_helper.from_array(v, k) for k, v in consts.items())],
        value_info=list(g.value_info),
    )
    model = helper.make_model(graph, opset_imports=list(net.opset_import), producer_name="sr-edge frame path")
    model.ir_version = net.ir_version
    # where the network starts and ends inside the frame graph (split_frame_graph cuts there)
    helper.set_model_props(model, {NET_INPUT_KEY: net_in, NET_OUTPUT_KEY: checked})
    onnx.checker.check_model(model)
    return model


def split_frame_graph(frame: onnx.ModelProto) -> tuple[onnx.ModelProto, onnx.ModelProto, onnx.ModelProto]:
    """A frame graph cut into (colour in, network, colour out) for runtimes that would run the
    colour work in the network's reduced precision (OpenVINO under a bf16 hint converts every
    float node): the two colour graphs are compiled f32, the network in its own precision.

    colour in: ``frame`` -> the network's input; network: that -> its output (phases where it
    ends in a shuffle) and ``frame_net_sum``; colour out: ``frame`` and the network's output ->
    ``frame_sr``."""
    import onnx.utils

    props = {p.key: p.value for p in frame.metadata_props}
    if NET_INPUT_KEY not in props or NET_OUTPUT_KEY not in props:
        raise SrEdgeError("not a frame graph of this sr-edge version (no network boundary recorded)")
    net_in, net_out = props[NET_INPUT_KEY], props[NET_OUTPUT_KEY]
    # the cut tensors' types (the extractor wants value_info for the new inputs and outputs;
    # shape inference does not carry them through the dynamic Reshapes)
    frame = copy.deepcopy(frame)
    known = {v.name for v in frame.graph.value_info}
    for name in (net_in, net_out):
        if name not in known:
            dims = ["batch", f"{name}_c", f"{name}_h", f"{name}_w"]
            frame.graph.value_info.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims))
    cut = onnx.utils.Extractor(frame)
    return (
        cut.extract_model([FRAME_INPUT], [net_in]),
        cut.extract_model([net_in], [net_out, FRAME_CHECK]),
        cut.extract_model([FRAME_INPUT, net_out], [FRAME_OUTPUT]),
    )


def _phases_to_nhwc(u8: str, scale: int, transpose: str, consts: dict[str, np.ndarray]) -> list[Any]:
    """Nodes taking uint8 ``(N, 3 s s, H, W)`` (colour, then phase row, phase column) to the frame
    ``(N, sH, sW, 3)``; their shape constants go into ``consts``."""
    from onnx import helper

    t = _t
    consts[t("dims_hw")] = np.array([1, 2], np.int64)
    consts[t("minus1")] = np.array([-1], np.int64)
    consts[t("three")] = np.array([3], np.int64)
    consts[t("s")] = np.array([scale], np.int64)
    shape = [
        helper.make_node("Shape", [FRAME_INPUT], [t("in_shape")], name=t("shape")),
        helper.make_node("Gather", [t("in_shape"), t("dims_hw")], [t("hw")], axis=0, name=t("get_hw")),
        helper.make_node("Mul", [t("hw"), t("s")], [t("shw")], name=t("scale_hw")),
        helper.make_node("Split", [t("hw")], [t("h"), t("w")], axis=0, num_outputs=2, name=t("split_hw")),
        helper.make_node("Split", [t("shw")], [t("sh"), t("sw")], axis=0, num_outputs=2, name=t("split_shw")),
    ]
    if transpose == "6d":
        # (N, 3, s_a, s_b, H, W) -> (N, H, s_a, W, s_b, 3) = (N, sH, sW, 3) in one transpose
        return [
            *shape,
            helper.make_node(
                "Concat",
                [t("minus1"), t("three"), t("s"), t("s"), t("h"), t("w")],
                [t("shape_6")],
                axis=0,
                name=t("c6"),
            ),
            helper.make_node(
                "Concat", [t("minus1"), t("sh"), t("sw"), t("three")], [t("shape_4")], axis=0, name=t("c4")
            ),
            helper.make_node("Reshape", [u8, t("shape_6")], [t("u8_6")], name=t("r6")),
            helper.make_node("Transpose", [t("u8_6")], [t("u8_t")], perm=[0, 4, 2, 5, 3, 1], name=t("t6")),
            helper.make_node("Reshape", [t("u8_t"), t("shape_4")], [FRAME_OUTPUT], name=t("to_nhwc")),
        ]
    # three transposes that each move one axis (ORT's fast path; one 6-D transpose took 49 ms at
    # 960x540 x2 there, these 5.5 ms): (3Ns, s_b, H, W) -> (3Ns, H, W, s_b) = (3N, s_a, H, sW)
    # -> (3N, H, s_a, sW) = (N, 3, sH, sW) -> (N, sH, sW, 3)
    return [
        *shape,
        helper.make_node("Concat", [t("minus1"), t("s"), t("h"), t("w")], [t("shape_1")], axis=0, name=t("c1")),
        helper.make_node("Concat", [t("minus1"), t("s"), t("h"), t("sw")], [t("shape_2")], axis=0, name=t("c2")),
        helper.make_node("Concat", [t("minus1"), t("three"), t("sh"), t("sw")], [t("shape_3")], axis=0, name=t("c3")),
        helper.make_node("Reshape", [u8, t("shape_1")], [t("u8_a")], name=t("r1")),
        helper.make_node("Transpose", [t("u8_a")], [t("u8_b")], perm=[0, 2, 3, 1], name=t("t1")),
        helper.make_node("Reshape", [t("u8_b"), t("shape_2")], [t("u8_c")], name=t("r2")),
        helper.make_node("Transpose", [t("u8_c")], [t("u8_d")], perm=[0, 2, 1, 3], name=t("t2")),
        helper.make_node("Reshape", [t("u8_d"), t("shape_3")], [t("u8_e")], name=t("r3")),
        helper.make_node("Transpose", [t("u8_e")], [FRAME_OUTPUT], perm=[0, 2, 3, 1], name=t("to_nhwc")),
    ]
