"""The deployment frame path: uint8 RGB in and out through one graph (sr_edge.frame_graph).

Structure exactly (graph inputs, outputs, where it falls back), values within stated bounds:
against the numpy path (MATLAB ``rgb2ycbcr``, Pillow bicubic chroma) a pixel may land one
grey level off from float rounding, and the chroma border is replicated rather than
renormalised; PSNR-Y of every shipped Y bundle on Set5 / Set14 stays within 0.01 dB.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sr_edge.backends import available_backends, load_bundle
from sr_edge.errors import SrEdgeError
from sr_edge.frame_graph import FRAME_CHECK, FRAME_INPUT, FRAME_OUTPUT, chroma_kernel, cubic_weights, frame_graph
from sr_edge.paths import PROJECT_ROOT
from sr_edge.upscale import NetworkUpscaler

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

EXPORT = PROJECT_ROOT / "export"
SHIPPED = sorted(p.parent for p in EXPORT.glob("*/x*/manifest.json"))
OPENVINO = "openvino" in available_backends()
DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 75 x 91 crop of a real photo (odd sizes: every phase and border case)."""
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[30:105, 140:231])


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float((d > 1).mean())


def _net(nodes: list, inputs: tuple[str, int], output: str, channels_out: int = 1, opset: int = 18) -> Any:
    """A tiny float graph: one input (name, channels) N x C x h x w, one output, an x2 ``scales``."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info(inputs[0], TensorProto.FLOAT, ["n", inputs[1], "h", "w"])
    y = helper.make_tensor_value_info(output, TensorProto.FLOAT, ["n", channels_out, "H", "W"])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(nodes, "net", [x], [y], initializer=[scales])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_chroma_kernel_is_bicubic_per_phase(scale: int) -> None:
    k = chroma_kernel(scale)
    assert k.shape == (scale * scale, 1, 5, 5) and k.dtype == np.float32
    assert np.allclose(k.sum(axis=(1, 2, 3)), 1.0, atol=1e-6)  # every phase keeps a flat image flat
    assert np.allclose(cubic_weights(0.0), [0, 1, 0, 0], atol=1e-12)  # on a sample: the sample
    assert np.allclose(cubic_weights(0.5), [-0.0625, 0.5625, 0.5625, -0.0625])  # Keys a = -0.5


@pytest.mark.parametrize("bundle", SHIPPED, ids=lambda p: str(p.relative_to(EXPORT)))
def test_frame_graph_matches_the_numpy_path(bundle: Path, photo: np.ndarray) -> None:
    with load_bundle(bundle, backend="ort") as session:
        if session.bundle.color_mode != "y":
            pytest.skip("an RGB model: no colour work around it")
        graph = session.upscaler()
        numpy_path = session.upscaler(frame_path="numpy")
        assert graph.frame_path == "graph" and numpy_path.frame_path == "numpy"
        got, want = graph(photo), numpy_path(photo)
    s = session.bundle.scale
    assert got.shape == want.shape == (75 * s, 91 * s, 3) and got.dtype == np.uint8
    worst, share = _diff(got, want)
    assert worst <= 3 and share < 1e-3, (worst, share)


def test_graph_structure_batch_and_fallbacks(photo: np.ndarray) -> None:
    bundle = EXPORT / "espcn" / "x3"
    g = frame_graph(onnx.load(str(bundle / "model.onnx")), 3)
    assert [i.name for i in g.graph.input] == [FRAME_INPUT]
    assert [o.name for o in g.graph.output] == [FRAME_OUTPUT, FRAME_CHECK]
    assert g.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert g.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    # the network ended in a pixel shuffle: the colour work runs in its phase space, no
    # DepthToSpace is left (the frame is interleaved by reshapes and transposes of uint8)
    assert "DepthToSpace" not in {n.op_type for n in g.graph.node}
    sess = ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"])
    two = np.stack([photo, photo[::-1].copy()])
    out = sess.run(None, {FRAME_INPUT: two})[0]
    assert out.shape == (2, 225, 273, 3) and out.dtype == np.uint8
    assert np.array_equal(out[1], sess.run(None, {FRAME_INPUT: two[1:]})[0][0])  # frames are independent
    with load_bundle(bundle, backend="ort") as session:
        up = session.upscaler()
        grey = photo[..., :1].copy()
        assert up(grey).shape == (225, 273, 1)  # grey and float input keep the numpy path
        assert up(photo.astype(np.float32) / 255).dtype == np.float32
        with pytest.raises(SrEdgeError, match="frame_path must be"):
            session.upscaler(frame_path="fast")
    with load_bundle(EXPORT / "espcn" / "x3", backend="ort") as session:
        rgb = NetworkUpscaler("rgb", 3, "rgb", session.run)
        assert rgb.frame_path == "numpy"


@pytest.mark.parametrize("bundle", ["ecbsr-m4c16/x2", "espcn/x3", "ecbsr-m4c16/x4-int8"])
def test_every_frame_graph_variant_computes_the_same_frame(bundle: str, photo: np.ndarray) -> None:
    """The fused colour convs and the 6-D transpose (the variants a backend may pick for speed)
    give the Split-and-Concat graph's frame within float rounding, and leave the caller's graph as it was."""
    path = EXPORT / bundle
    with load_bundle(path, backend="ort") as session:
        net = onnx.load(str(session.bundle.onnx_for("ort")))
        scale = session.bundle.scale
        want = session.upscaler(frame_path="numpy")(photo)
    before = net.SerializeToString()
    outs = {}
    for fused in (False, True):
        for transpose in ("axes", "6d"):
            g = frame_graph(net, scale, fused=fused, transpose=transpose)
            names = {n.name for n in g.graph.node}
            ops = [n.op_type for n in g.graph.node if n.name.startswith("frame_path_")]
            assert ({"frame_path_split_y", "frame_path_join"} <= names) is not fused  # no Split, no Concat of planes
            assert ops.count("Transpose") == (2 if transpose == "6d" else 4)  # with the input's NHWC -> NCHW
            sess = ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"])
            outs[fused, transpose] = sess.run(None, {FRAME_INPUT: photo[None]})[0][0]
    assert net.SerializeToString() == before  # graph structure, not float results: the input is not rewired
    ref = outs[False, "axes"]
    for key, out in outs.items():
        worst, share = _diff(out, ref)
        assert worst <= 1 and share == 0.0, (key, worst)  # rounding apart, never more than one level
        worst, share = _diff(out, want)
        assert worst <= 3 and share < 1e-3, (key, worst, share)
    with pytest.raises(ValueError, match="transpose must be"):
        frame_graph(net, scale, transpose="5d")


def test_generic_path_for_a_network_without_a_final_shuffle(photo: np.ndarray) -> None:
    """A Y network that ends in something else (here a nearest-neighbour Resize) gets the
    HR-domain colour path: chroma shuffled on its own, then the colour matrix at HR."""
    from onnx import helper

    net = _net([helper.make_node("Resize", ["lr", "", "scales"], ["sr"], mode="nearest")], ("lr", 1), "sr")
    g = frame_graph(net, 2)
    assert "DepthToSpace" in {n.op_type for n in g.graph.node}
    frame = ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(net.SerializeToString(), providers=["CPUExecutionProvider"])
    numpy_path = NetworkUpscaler("nearest", 2, "y", lambda x: plain.run(None, {"lr": x})[0])
    worst, share = _diff(frame.run(None, {FRAME_INPUT: photo[None]})[0][0], numpy_path(photo))
    assert worst <= 3 and share < 1e-3, (worst, share)


def test_a_network_that_outputs_nan_is_refused_on_the_frame_path(photo: np.ndarray) -> None:
    """The uint8 frame would show NaN as black: the graph's second output (the network output's
    sum) carries it, and the upscaler refuses the frame as the numpy path does."""
    from onnx import helper

    nodes = [
        helper.make_node("Sub", ["lr", "lr"], ["zero"]),
        helper.make_node("Div", ["zero", "zero"], ["nan"]),  # 0 / 0
        helper.make_node("Resize", ["nan", "", "scales"], ["sr"], mode="nearest"),
    ]
    net = _net(nodes, ("lr", 1), "sr")
    sess = ort.InferenceSession(frame_graph(net, 2).SerializeToString(), providers=["CPUExecutionProvider"])

    def frame(x: np.ndarray) -> tuple[np.ndarray, float]:
        out, total = sess.run(None, {FRAME_INPUT: x})
        return out, float(total)

    up = NetworkUpscaler("nan-net", 2, "y", lambda x: x, frame=frame)
    assert up.frame_path == "graph"
    with pytest.raises(SrEdgeError, match="nan-net: the network's output holds NaN or Inf"):
        up(photo)


def test_frame_graph_refuses_what_it_cannot_wrap() -> None:
    from onnx import helper

    identity = [helper.make_node("Identity", ["x"], ["y"])]
    with pytest.raises(SrEdgeError, match="Y-channel networks"):
        frame_graph(_net(identity, ("x", 3), "y", channels_out=3), 2)
    with pytest.raises(SrEdgeError, match="opset 13"):
        frame_graph(_net(identity, ("x", 1), "y", opset=11), 2)


@pytest.mark.skipif(not OPENVINO, reason="OpenVINO is not installed (pip install 'sr-edge[openvino]')")
@pytest.mark.parametrize("bundle", ["ecbsr-m4c16/x2", "fsrcnn/x3"])
def test_openvino_runs_the_frame_graph(bundle: str, photo: np.ndarray) -> None:
    with load_bundle(EXPORT / bundle, backend="openvino") as session:
        graph, numpy_path = session.upscaler(), session.upscaler(frame_path="numpy")
        assert graph.frame_path == "graph"
        worst, share = _diff(graph(photo), numpy_path(photo))
    assert worst <= 3 and share < 1e-3, (worst, share)


@pytest.mark.skipif(not OPENVINO, reason="OpenVINO is not installed (pip install 'sr-edge[openvino]')")
@pytest.mark.parametrize("bundle", ["ecbsr-m4c16/x2", "fsrcnn/x3"])
def test_openvino_bf16_keeps_the_colour_work_in_float32(bundle: str, photo: np.ndarray) -> None:
    """Where bf16 is native the plugin would run the colour convs in bf16 (38% of values more than
    one grey level off, ECBSR x2 Set5 -0.03 dB on AMD Zen 5): the frame graph is cut into colour
    in / network / colour out, the colour parts compiled f32, so the frame stays within the fp32
    graph's bounds of the numpy path. Where bf16 is not native the session runs f32 anyway."""
    from sr_edge.frame_graph import split_frame_graph

    with load_bundle(EXPORT / bundle, backend="openvino", precision="bf16") as session:
        graph, numpy_path = session.upscaler(), session.upscaler(frame_path="numpy")
        assert graph.frame_path == "graph"
        worst, share = _diff(graph(photo), numpy_path(photo))
        assert len(session._frame_compiled or []) == (3 if session.fallback is None else 1)
    assert worst <= 3 and share < 1e-3, (worst, share)
    whole = frame_graph(onnx.load(str(EXPORT / bundle / "model.onnx")), int(bundle[-1]))
    pre, net, post = split_frame_graph(whole)
    assert [i.name for i in pre.graph.input] == [FRAME_INPUT] and FRAME_CHECK in [o.name for o in net.graph.output]
    assert [o.name for o in post.graph.output] == [FRAME_OUTPUT]
    assert len(pre.graph.node) + len(net.graph.node) + len(post.graph.node) >= len(whole.graph.node)
    with pytest.raises(SrEdgeError, match="not a frame graph"):
        split_frame_graph(onnx.load(str(EXPORT / bundle / "model.onnx")))


@pytest.mark.skipif(not OPENVINO, reason="OpenVINO is not installed (pip install 'sr-edge[openvino]')")
def test_a_frame_graph_that_fails_its_first_frame_falls_back(photo: np.ndarray, monkeypatch: Any) -> None:
    """A plugin that compiles the frame graph and then fails at inference (OpenVINO 2026.4 did so
    with the fused variant in bf16) leaves the numpy path running, with the reason."""
    from sr_edge.backends.openvino_backend import OpenVinoSession

    with load_bundle(EXPORT / "espcn" / "x2", backend="openvino") as session:
        broken = frame_graph(onnx.load(str(EXPORT / "espcn" / "x2" / "model.onnx")), 2, fused=True, transpose="6d")
        # the 6-D reshape one element off: the graph compiles (shapes are dynamic) and fails when run
        at = next(i for i, n in enumerate(broken.graph.node) if n.op_type == "Reshape")
        good = broken.graph.node[at].input[1]
        broken.graph.node.insert(at, onnx.helper.make_node("Add", [good, "frame_path_one_more"], ["frame_path_bad"]))
        broken.graph.node[at + 1].input[1] = "frame_path_bad"
        one_more = np.array([0, 0, 0, 0, 0, 1], np.int64)
        broken.graph.initializer.append(onnx.numpy_helper.from_array(one_more, "frame_path_one_more"))
        monkeypatch.setattr(OpenVinoSession, "_frame_graph", lambda self: broken.SerializeToString())
        up = session.upscaler()
        why = up.frame_path
        assert why.startswith("numpy (the frame graph failed: OpenVINO failed on its first frame"), why
        assert up(photo).shape == (150, 182, 3)


@pytest.mark.skipif(not (DATASETS / "eval").is_dir(), reason="needs ../shared/datasets (Set5, Set14)")
@pytest.mark.parametrize("bundle", SHIPPED, ids=lambda p: str(p.relative_to(EXPORT)))
def test_deployed_frames_keep_psnr_within_a_hundredth_of_a_db(bundle: Path) -> None:
    """The acceptance bound: PSNR-Y from deployed frames (the graph path) within 0.01 dB of the
    numpy path on Set5 and Set14, for every shipped Y bundle (ONNX Runtime)."""
    from sr_edge.metrics import psnr, rgb_to_y, shave

    with load_bundle(bundle, backend="ort") as session:
        if session.bundle.color_mode != "y":
            pytest.skip("an RGB model")
        s = session.bundle.scale
        graph, exact = session.upscaler(), session.upscaler(frame_path="numpy")
        for name in ("Set5", "Set14"):
            # PSNR-Y as sr_edge.evaluate computes it, both paths on the same protocol pairs
            scores = [
                [psnr(shave(rgb_to_y(up(lr)), s), shave(rgb_to_y(hr), s)) for up in (graph, exact)]
                for hr, lr in _protocol_pairs(name, s)
            ]
            got, want = np.mean(scores, axis=0)
            assert abs(got - want) < 0.01, (name, got, want)


@functools.cache
def _protocol_pairs(name: str, scale: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(HR, LR) of a dataset under the protocol, made once for every bundle of that scale."""
    from sr_edge.data.datasets import resolve_dataset
    from sr_edge.evaluate import iter_pairs

    return tuple((hr, lr) for _, hr, lr in iter_pairs(resolve_dataset(name), scale))


def test_ort_frame_graph_carries_the_prelu_rewrite() -> None:
    """The frame graph wraps the network as the session runs it: ECBSR's PReLUs rewritten for
    ORT's blocked layout (inside the frame graph the rewrite would not apply: its uint8
    Quantize/DequantizeLinear read as a QDQ graph; ECBSR x2 frame 157 vs 104 ms, AMD Zen 5)."""
    ops = {}
    for rewrite in (True, False):
        with load_bundle(EXPORT / "ecbsr-m4c16" / "x2", backend="ort", prelu_rewrite=rewrite) as session:
            ops[rewrite] = {n.op_type for n in onnx.load_from_string(session._frame_graph()).graph.node}
    assert "PRelu" not in ops[True] and "PRelu" in ops[False]
