"""``sr-edge check-trt``: the CPU-side TensorRT compatibility check, on hand-made graphs and bundles.

Each bad graph breaks exactly one rule, so each test shows the checker names that rule
(and only that one); the good graphs mirror what the exporter emits (Conv, PRelu,
DepthToSpace, cubic Resize, symmetric QDQ).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sr_edge.backends import ShapeRange
from sr_edge.backends.trt_check import TRT_SUPPORTED_OPS, check_tensorrt
from sr_edge.bundle import find_bundles

PROJECT = Path(__file__).resolve().parents[1]
SMALL = ShapeRange((1, 8, 8), (1, 64, 64), (1, 256, 256))


def _model(
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    channels: int | str = 1,
    in_type: int = TensorProto.FLOAT,
    out_channels: int = 1,
    opset: int = 18,
    hw: tuple[int | str, int | str] = ("height", "width"),
) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("lr", in_type, ["batch", channels, *hw])
    y = helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["batch", out_channels, None, None])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _espcn_like(first_input: str = "lr") -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(8, 1, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        numpy_helper.from_array(np.full((8, 1, 1), 0.25, np.float32), "slope"),
        numpy_helper.from_array(rng.normal(size=(4, 8, 3, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(4, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", [first_input, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["c1", "slope"], ["a1"]),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["c2"], ["sr"], blocksize=2, mode="CRD"),
    ]
    return nodes, inits


def _qdq(
    name: str, data: str, scale: np.ndarray, zero: np.ndarray, out: str, axis: int | None = None
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    kw: dict[str, Any] = {} if axis is None else {"axis": axis}
    inits = [numpy_helper.from_array(scale, f"{name}_s"), numpy_helper.from_array(zero, f"{name}_z")]
    nodes = [
        helper.make_node("QuantizeLinear", [data, f"{name}_s", f"{name}_z"], [f"{name}_q"], **kw),
        helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [out], **kw),
    ]
    return nodes, inits


def _one_problem(model: onnx.ModelProto, *needles: str, profile: ShapeRange = SMALL) -> str:
    report = check_tensorrt(model, profile)
    assert len(report.problems) == 1, report.problems
    for needle in needles:
        assert needle in report.problems[0], report.problems[0]
    assert "\n" not in report.problems[0]
    return report.problems[0]


def test_espcn_like_graph_passes() -> None:
    report = check_tensorrt(_model(*_espcn_like()), SMALL)
    assert report.ok, report.problems
    assert report.ops == {"Conv": 2, "DepthToSpace": 1, "PRelu": 1}


def test_cubic_resize_like_srcnn_passes_but_antialias_and_symmetric_mode_fail() -> None:
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")

    def resize(**attrs: Any) -> onnx.ModelProto:
        node = helper.make_node("Resize", ["lr", "", "scales"], ["sr"], mode="cubic", cubic_coeff_a=-0.75, **attrs)
        return _model([node], [scales])

    assert check_tensorrt(resize(coordinate_transformation_mode="half_pixel"), SMALL).ok
    _one_problem(resize(antialias=1), "antialias")
    _one_problem(resize(coordinate_transformation_mode="half_pixel_symmetric"), "half_pixel_symmetric")


def test_unsupported_and_foreign_domain_operators_are_named() -> None:
    nodes, inits = _espcn_like()
    nodes[1] = helper.make_node("FusedConv", ["c1", "w1"], ["a1"], domain="com.microsoft")
    _one_problem(_model(nodes, inits), "com.microsoft::FusedConv")
    nodes, inits = _espcn_like()
    nodes[1] = helper.make_node("Unique", ["c1"], ["a1"])
    assert "Unique" not in TRT_SUPPORTED_OPS
    _one_problem(_model(nodes, inits), "operator Unique")


def test_opset_outside_tensorrt_range() -> None:
    _one_problem(_model(*_espcn_like(), opset=21), "opset 21")


def test_symmetric_qdq_passes_with_a_note() -> None:
    nodes, inits = _espcn_like(first_input="lr_dq")
    qn, qi = _qdq("in", "lr", np.array(1 / 127, np.float32), np.array(0, np.int8), "lr_dq")
    # per-channel weights on axis 0, as TensorRT wants
    wn, wi = _qdq("w", "w1_raw", np.full(8, 0.01, np.float32), np.zeros(8, np.int8), "w1", axis=0)
    w1 = next(i for i in inits if i.name == "w1")
    w1.name = "w1_raw"
    report = check_tensorrt(_model(qn + wn + nodes, inits + qi + wi), SMALL)
    assert report.ok, report.problems
    assert any("Q/DQ" in n for n in report.notes)


@pytest.mark.parametrize(
    ("scale", "zero", "needle"),
    [
        (np.array(0.02, np.float32), np.array(3, np.int8), "zero point must be 0"),
        (np.array(-0.02, np.float32), np.array(0, np.int8), "positive"),
        (np.array(0.02, np.float32), np.array(0, np.uint8), "uint8"),
    ],
)
def test_bad_activation_qdq(scale: np.ndarray, zero: np.ndarray, needle: str) -> None:
    nodes, inits = _espcn_like(first_input="lr_dq")
    qn, qi = _qdq("in", "lr", scale, zero, "lr_dq")
    report = check_tensorrt(_model(qn + nodes, inits + qi), SMALL)
    assert report.problems and all(needle in p or "DequantizeLinear" in p for p in report.problems)
    assert any(needle in p for p in report.problems)


def test_per_channel_weight_axis_must_be_zero_and_activations_per_tensor() -> None:
    nodes, inits = _espcn_like()
    # axis 1 (input channels) on a 4 x 8 x 3 x 3 weight
    wn, wi = _qdq("w", "w2_raw", np.full(8, 0.01, np.float32), np.zeros(8, np.int8), "w2", axis=1)
    next(i for i in inits if i.name == "w2").name = "w2_raw"
    report = check_tensorrt(_model(wn + nodes, inits + wi), SMALL)
    assert len(report.problems) == 2 and all("axis 1" in p for p in report.problems)

    nodes, inits = _espcn_like()
    an, ai = _qdq("act", "c1", np.full(8, 0.01, np.float32), np.zeros(8, np.int8), "c1q", axis=1)
    nodes[1] = helper.make_node("PRelu", ["c1q", "slope"], ["a1"])
    report = check_tensorrt(_model(nodes[:1] + an + nodes[1:], inits + ai), SMALL)
    assert report.problems and all("per-channel quantisation of an activation" in p for p in report.problems)


def test_dynamic_channels_and_int64_input_fail() -> None:
    _one_problem(_model(*_espcn_like(), channels="c"), "dynamic channel count")
    report = check_tensorrt(_model(*_espcn_like(), in_type=TensorProto.INT64), SMALL)
    assert any("int64" in p for p in report.problems)


def test_int64_initializer_beyond_int32() -> None:
    nodes, inits = _espcn_like()
    big = numpy_helper.from_array(np.array([0, 2**40], np.int64), "big")
    nodes.append(helper.make_node("Identity", ["big"], ["unused"]))
    _one_problem(_model(nodes, [*inits, big]), "beyond int32")


def test_profile_volume_limit_and_static_sizes() -> None:
    rng = np.random.default_rng(0)
    wide = [
        numpy_helper.from_array(rng.normal(size=(1100, 1, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=(4, 1100, 1, 1)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["lr", "w"], ["wide"]),
        helper.make_node("Conv", ["wide", "w2"], ["c"]),
        helper.make_node("DepthToSpace", ["c"], ["sr"], blocksize=2),
    ]
    model = _model(nodes, wide)
    assert check_tensorrt(model, SMALL).ok  # 1100 x 256 x 256 is fine
    big = ShapeRange((1, 8, 8), (1, 360, 640), (1, 1088, 1920))  # 1100 x 1088 x 1920 > 2^31
    _one_problem(model, "'wide'", "2^31", profile=big)

    static = _model(*_espcn_like(), hw=(64, "width"))
    _one_problem(static, "height is static (64)", profile=SMALL)
    assert check_tensorrt(static, ShapeRange((1, 64, 8), (1, 64, 64), (1, 64, 256))).ok


def test_cli_prints_one_line_per_problem_and_fails(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    onnx.save(_model(*_espcn_like()), good)
    nodes, inits = _espcn_like()
    nodes[1] = helper.make_node("Unique", ["c1"], ["a1"])
    onnx.save(_model(nodes, inits, opset=21), bad)
    args = [sys.executable, "-m", "sr_edge", "check-trt", str(good), str(bad), "--max", "256x256", "--opt", "64x64"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["OK", "FAIL", "FAIL", "sr-edge:"], lines
    assert "opset 21" in lines[1] and "Unique" in lines[2]
    proc = subprocess.run([*args[:4], str(good)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("OK"), proc.stdout + proc.stderr
    proc = subprocess.run([*args[:4], str(tmp_path / "absent")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("bundle", find_bundles(PROJECT / "export"), ids=lambda p: str(p.relative_to(PROJECT)))
def test_shipped_bundles_are_tensorrt_friendly(bundle: Path) -> None:
    report = check_tensorrt(bundle)
    assert report.ok, report.problems
