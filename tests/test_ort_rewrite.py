"""The ORT CPU rewrite of PRelu: bit-identical outputs, and only where it applies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sr_edge.backends import load_bundle
from sr_edge.backends.ort_backend import OrtOptions, OrtSession, cpu_graph, ort_session
from sr_edge.backends.ort_rewrite import prelu_for_nchwc
from sr_edge.errors import SrEdgeError

ROOT = Path(__file__).resolve().parents[1]
C = 16


def _graph(slope: np.ndarray, slope_as_input: bool = False, qdq: bool = False) -> onnx.ModelProto:
    """lr (1x1xHxW) -> Conv 3x3 to C channels -> PRelu(slope) -> Conv 3x3 to 1 channel."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (C, 1, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (1, C, 3, 3)).astype(np.float32), "w2")
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, list(slope.shape))
    inits = [w1, w2] + ([] if slope_as_input else [numpy_helper.from_array(slope.astype(np.float32), "a")])
    nodes = [helper.make_node("Conv", ["lr", "w1"], ["h"], pads=[1, 1, 1, 1])]
    if qdq:
        inits += [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.uint8(128), "z")]
        nodes += [
            helper.make_node("QuantizeLinear", ["h", "s", "z"], ["hq"]),
            helper.make_node("DequantizeLinear", ["hq", "s", "z"], ["hd"]),
        ]
        nodes.append(helper.make_node("PRelu", ["hd", "a"], ["p"]))
    else:
        nodes.append(helper.make_node("PRelu", ["h", "a"], ["p"]))
    nodes.append(helper.make_node("Conv", ["p", "w2"], ["sr"], pads=[1, 1, 1, 1]))
    inputs = [helper.make_tensor_value_info("lr", TensorProto.FLOAT, [1, 1, "h", "w"])]
    inputs += [a] if slope_as_input else []
    out = helper.make_tensor_value_info("sr", TensorProto.FLOAT, [1, 1, "h", "w"])
    g = helper.make_graph(nodes, "g", inputs, [out], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return np.asarray(s.run(None, {"lr": x})[0])


@pytest.mark.parametrize("shape", [(C, 1, 1), (1, C, 1, 1), (1,)], ids=["C11", "1C11", "scalar"])
def test_prelu_rewrite_is_bit_identical(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    slope = rng.uniform(-0.3, 1.5, shape).astype(np.float32)  # negative and > 1 slopes too
    model = _graph(slope)
    x = rng.normal(0, 1, (1, 1, 37, 53)).astype(np.float32)
    before = _run(model, x)
    rewritten = onnx.ModelProto.FromString(model.SerializeToString())
    assert prelu_for_nchwc(rewritten) == 1
    onnx.checker.check_model(rewritten)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "PRelu" not in ops
    assert ("LeakyRelu" in ops) == (shape == (1,))
    assert "a" not in {i.name for i in rewritten.graph.initializer}  # the old slope is gone
    np.testing.assert_array_equal(_run(rewritten, x), before)


def test_prelu_rewrite_leaves_what_it_cannot_prove() -> None:
    slope = np.full((C, 1, 1), 0.25, np.float32)
    assert prelu_for_nchwc(_graph(slope, slope_as_input=True)) == 0  # slope fed at run time
    assert prelu_for_nchwc(_graph(slope, qdq=True)) == 0  # QDQ graph: ORT's integer fusions come first
    assert prelu_for_nchwc(_graph(np.full((C, 1), 0.25, np.float32))) == 0  # slope on the wrong axis
    half = _graph(slope)
    half.graph.initializer[-1].CopyFrom(numpy_helper.from_array(slope.astype(np.float16), "a"))
    assert prelu_for_nchwc(half) == 0  # not float32: the added float32 weights would not type-check


def test_cpu_graph_only_on_the_cpu_provider_with_full_optimisation() -> None:
    model = _graph(np.full((C, 1, 1), 0.25, np.float32)).SerializeToString()
    cpu = ["CPUExecutionProvider"]
    assert cpu_graph(model, OrtOptions(), cpu)[1] == {"prelu": 1}
    assert cpu_graph(model, OrtOptions(), [("CUDAExecutionProvider", {}), *cpu]) == (model, {})
    assert cpu_graph(model, OrtOptions(graph_optimization="extended"), cpu) == (model, {})
    assert cpu_graph(model, OrtOptions(prelu_rewrite=False), cpu) == (model, {})


def test_shipped_prelu_bundle_runs_rewritten_with_the_same_output() -> None:
    bundle = ROOT / "export" / "ecbsr-m4c16" / "x2"
    x = np.random.default_rng(2).random((1, 1, 45, 61), dtype=np.float32)
    on = load_bundle(bundle, "ort", threads=1)
    off = load_bundle(bundle, "ort", threads=1, prelu_rewrite=False)
    assert isinstance(on, OrtSession) and isinstance(off, OrtSession)
    assert on.graph_rewrites == {"prelu": 5}
    assert off.graph_rewrites is None
    # Within float32 rounding, not bit for bit: the rewrite lets ORT pick another conv kernel
    # (NCHWc) whose summation order is the CPU's business.
    np.testing.assert_allclose(on.run(x), off.run(x), rtol=0, atol=1e-6)


def test_ort_threads_stop_spinning_when_a_run_returns() -> None:
    """ORT threads spin-wait during a run (``spin=False`` turns that off) and always stop
    when it returns: the frame's colour work needs the cores then."""
    model = _graph(np.full((C, 1, 1), 0.25, np.float32)).SerializeToString()
    for spin, want in ((True, "1"), (False, "0")):
        sess, _ = ort_session(model, OrtOptions(threads=1, spin=spin), "cpu")
        config = sess.get_session_options().get_session_config_entry
        assert config("session.intra_op.allow_spinning") == want
        assert config("session.force_spinning_stop") == "1"
    with pytest.raises(SrEdgeError, match="ort spin must be true or false, got 'yes'"):
        OrtOptions(spin="yes")  # type: ignore[arg-type]
