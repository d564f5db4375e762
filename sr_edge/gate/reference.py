"""A fixed reference workload, timed in every gate round: how fast the machine was.

Three 3x3 convolutions (16 -> 16 channels, ReLU) on a 1 x 16 x 180 x 320 float32 tensor,
with fixed weights, run by ONNX Runtime's CPU provider at the gate's thread count. It is
built in memory from the same description in every sr-edge version, so two gate results
files can be compared on it: a gate JSON says how fast its machine was, and how much that
speed moved during the run (the noise the paired rounds had to cancel).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

CHANNELS, HEIGHT, WIDTH, LAYERS = 16, 180, 320, 3
DESCRIPTION = (
    f"{LAYERS} x (conv 3x3 {CHANNELS}->{CHANNELS} + ReLU) on 1x{CHANNELS}x{HEIGHT}x{WIDTH} float32, ONNX Runtime CPU"
)
GOPS = 2.0 * LAYERS * CHANNELS * CHANNELS * 9 * HEIGHT * WIDTH / 1e9  # operations per run


def _graph() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    prev = "x"
    for i in range(LAYERS):
        w = (rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * (2.0 / (CHANNELS * 9)) ** 0.5).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev = f"r{i}"
    shape = [1, CHANNELS, HEIGHT, WIDTH]
    graph = helper.make_graph(
        nodes,
        "sr_edge_gate_reference",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def reference_workload(threads: int | None = None) -> Callable[[int], list[float]]:
    """A function ``timed(runs) -> milliseconds per run`` of the reference workload (warmed up)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess: Any = ort.InferenceSession(_graph(), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((1, CHANNELS, HEIGHT, WIDTH), dtype=np.float32)
    feed = {"x": x}
    sess.run(None, feed)

    def timed(runs: int) -> list[float]:
        out = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            sess.run(None, feed)
            out.append((time.perf_counter_ns() - t0) / 1e6)
        return out

    return timed
