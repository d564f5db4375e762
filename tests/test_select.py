"""Choosing a variant per device budget: ``sr_edge.select``, the roofline estimate, ``report A B``.

The lab: copies of two shipped x2 bundles, a "pruned" copy of one (a manifest
``compression`` record: select treats variants generically) and an int8 QDQ copy, a
two-image dataset, and a profile of this machine (``[detect]`` = its architecture), all
measured once by ``benchmark`` at 48x32. Budgets are generous or impossible, never close:
these tests check behaviour, never speed.
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sr_edge.bench import BenchSettings, LatencyPlan, benchmark
from sr_edge.cli import main
from sr_edge.devices import Resolution, load_profile
from sr_edge.errors import SrEdgeError
from sr_edge.paths import bundles_dir
from sr_edge.roofline import graph_cost, roofline
from sr_edge.select import (
    SelectOptions,
    across_devices,
    check_estimates,
    fit,
    select,
    spearman,
    verify,
)

FAST = LatencyPlan(warmup=1, min_runs=2, min_time_s=0.0, max_time_s=5.0)
PROFILE = f"""
name = "tiny-cpu"
description = "this machine, at a tiny frame size (tests)"
[runtime]
backends = ["ort"]
precisions = ["fp32", "int8"]
device = "cpu"
threads = 1
peers = []
[workload]
resolutions = ["48x32"]
scales = [2]
latency_budget_ms = 10000.0
memory_budget_mb = 8192
datasets = []
[hardware]
peak_fp32_gflops = 100.0
peak_int8_gops = 400.0
memory_bandwidth_gbs = 10.0
[detect]
arch = ["{platform.machine()}"]
"""


def _quantize(src: Path, dst: Path) -> None:
    """An int8 QDQ copy of a float bundle (ORT static quantisation on random calibration data)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from sr_edge.provenance import sha256_file

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"lr": rng.random((1, 1, 24, 24), dtype=np.float32)} for _ in range(3)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    dst.mkdir(parents=True)
    quantize_static(
        str(src / "model.onnx"), str(dst / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["precision"] = "int8"
    manifest["metrics"] = None
    manifest["files"] = {"model.onnx": {"sha256": sha256_file(dst / "model.onnx")}}
    (dst / "manifest.json").write_text(json.dumps(manifest))


def _rewrite(src: Path, dst: Path, change: Any) -> Path:
    doc = json.loads(src.read_text())
    change(doc)
    dst.write_text(json.dumps(doc))
    return dst


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sr_edge.data.io import write_image

    root = tmp_path_factory.mktemp("select")
    bundles = root / "bundles"
    for model in ("espcn", "fsrcnn"):
        shutil.copytree(bundles_dir() / model / "x2", bundles / model / "x2")
    pruned = bundles / "espcn" / "x2-pruned"
    shutil.copytree(bundles / "espcn" / "x2", pruned)
    _rewrite(pruned / "manifest.json", pruned / "manifest.json",
             lambda d: d.update(compression={"method": "prune", "ratio": 0.5}))  # fmt: skip
    _quantize(bundles / "espcn" / "x2", bundles / "espcn" / "x2-int8")
    data = root / "tiny"
    data.mkdir()
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 255, 72 * 60).reshape(60, 72)
    for i in range(2):
        img = np.clip(ramp[..., None] * [1.0, 0.7, 0.4] + rng.normal(0, 12, (60, 72, 3)), 0, 255).astype(np.uint8)
        write_image(data / f"img{i}.png", img)
    (root / "tiny-cpu.toml").write_text(PROFILE)
    profile = load_profile(root / "tiny-cpu.toml")
    settings = BenchSettings(
        bundles_dir=bundles, datasets=(str(data),), resolutions=(Resolution(48, 32),), scales=(2,), peers=(),
        latency=FAST, crops=False,
    )  # fmt: skip
    results = root / "results-tiny-cpu.json"
    benchmark(profile, settings, out=results)
    return {"root": root, "bundles": bundles, "profile": root / "tiny-cpu.toml", "results": results}


def _opts(lab: dict[str, Path], **kw: Any) -> SelectOptions:
    base: dict[str, Any] = {
        "device": load_profile(lab["profile"]), "results": (lab["results"],), "bundles_dir": lab["bundles"],
        "dataset": "tiny", "calibration": (lab["results"],),
    }  # fmt: skip
    base.update(kw)
    return SelectOptions(**base)


def test_the_pick_then_meets_its_budget_when_measured_here(lab: dict[str, Path]) -> None:
    sel = select(_opts(lab, budget_ms=10_000.0))
    pick = sel.pick
    assert pick is not None and pick.fits and pick.verdict == "pick" and not pick.latency_estimated
    fits = [c for c in sel.candidates if c.fits]
    assert pick.psnr == max(c.psnr for c in fits if c.psnr is not None)
    assert all(c.verdict for c in sel.candidates)  # every runner-up says why it lost
    assert sel.measured_from == (str(lab["results"]),)
    check = verify(sel, FAST)  # the direct measurement: a generous budget, a tiny frame
    assert check.id == pick.id and check.meets and check.stats.runs >= 2


def test_variants_are_generic(lab: dict[str, Path]) -> None:
    """Any bundle folder is a variant: a compressed copy and an int8 (QDQ) copy are candidates like the rest."""
    sel = select(_opts(lab))
    by_id = {c.id: c for c in sel.candidates}
    assert by_id["espcn/x2-pruned@ort/fp32"].compression == "method=prune, ratio=0.5"
    assert "[method=prune, ratio=0.5]" in by_id["espcn/x2-pruned@ort/fp32"].label
    assert by_id["espcn/x2-int8@ort/int8"].precision == "int8"
    assert "espcn/x2-int8@ort/fp32" not in by_id and "espcn/x2@ort/int8" not in by_id  # not pairings at all


def test_impossible_budget_exits_nonzero_with_one_line(
    lab: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sel = select(_opts(lab, budget_ms=1e-6))
    assert sel.pick is None and sel.reason and "nothing fits" in sel.reason and "\n" not in sel.reason
    assert all(c.verdict.startswith("over budget") for c in sel.candidates)
    code = main(["select", "--device", str(lab["profile"]), "--results", str(lab["results"]),
                 "--bundles", str(lab["bundles"]), "--dataset", "tiny", "--budget-ms", "0.000001"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "nothing fits tiny-cpu x2 at 48x32" in err


def test_min_psnr_and_memory_rule_candidates_out(lab: dict[str, Path]) -> None:
    sel = select(_opts(lab, min_psnr=99.0))
    assert sel.pick is None and "--min-psnr" in (sel.reason or "")
    sel = select(_opts(lab, memory_mb=1e-3, estimate=True))  # estimated memory: never zero
    assert sel.pick is None and "MB" in (sel.reason or "")
    assert any(c.verdict.startswith("over memory") for c in sel.candidates)


def test_estimates_are_labelled(lab: dict[str, Path]) -> None:
    sel = select(_opts(lab, estimate=True))
    assert sel.estimated and not sel.measured_from
    assert all(c.latency_estimated and c.latency_source.startswith("ESTIMATED") for c in sel.candidates)
    assert all(f.basis.startswith("fit") for f in sel.factors)  # the tiny machine measured ort fp32 and int8
    assert "(ESTIMATED)" in sel.headline()


def test_an_unmeasured_device_is_ranked_by_the_roofline(lab: dict[str, Path]) -> None:
    sel = select(device="jetson-orin-nano", scale=2, bundles_dir=lab["bundles"], dataset="tiny",
                 calibration=(lab["results"],))  # fmt: skip
    trt = [c for c in sel.candidates if c.backend == "tensorrt"]
    assert trt and all(c.latency_estimated for c in trt)
    assert any("no tensorrt" in f.basis for f in sel.factors)  # the fallback is named, not hidden
    assert any(c.psnr_source.startswith("measured on tiny-cpu") for c in sel.candidates)
    fp16 = next(c for c in trt if c.precision == "fp16" and c.variant == "espcn/x2")
    fp32 = next(c for c in trt if c.precision == "fp32" and c.variant == "espcn/x2")
    assert fp16.latency_ms is not None and fp32.latency_ms is not None and fp16.latency_ms < fp32.latency_ms


def test_report_of_two_devices_writes_the_table_and_each_pick(
    lab: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def other(doc: dict[str, Any]) -> None:  # the same measurements under a second profile
        doc["device"]["name"] = "tiny-b"
        doc["device"]["workload"]["latency_budget_ms"] = 1e-6

    b = _rewrite(lab["results"], tmp_path / "results-tiny-b.json", other)
    table = across_devices([lab["results"], b], scale=2, dataset="tiny", bundles_dir=lab["bundles"],
                           calibration=(lab["results"],))  # fmt: skip
    assert [s.device.name for s in table.selections] == ["tiny-cpu", "tiny-b"]
    assert table.selections[0].pick is not None and table.selections[1].pick is None
    assert set(table.row_ids) >= {"espcn/x2@ort/fp32", "fsrcnn/x2@ort/fp32"}
    code = main(["report", str(lab["results"]), str(b), "--out", str(tmp_path / "rep"), "--dataset", "tiny"])
    out = capsys.readouterr().out
    text = (tmp_path / "rep" / "devices.md").read_text()
    assert code == 0 and "tiny-cpu (measured" in text and "tiny-b (measured" in text and " pick**" in text
    assert "pick for tiny-cpu" in out and "tiny-b: nothing fits" in out
    assert json.loads((tmp_path / "rep" / "devices.json").read_text())[0]["scale"] == 2


def test_a_results_file_of_another_schema_version_is_one_line(
    lab: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _rewrite(lab["results"], tmp_path / "old.json", lambda d: d.update(schema_version=99))
    with pytest.raises(SrEdgeError, match="schema version 99"):
        select(_opts(lab, results=(bad,)))
    assert main(["select", "--results", str(bad)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(SrEdgeError, match="measured for tiny-cpu, not jetson-orin-nano"):
        select(_opts(lab, device="jetson-orin-nano"))


def test_the_estimate_is_checked_against_another_machine(lab: dict[str, Path], tmp_path: Path) -> None:
    """Leave-one-machine-out: a machine's rows are ranked by factors fitted on the other machine only."""
    twin = _rewrite(lab["results"], tmp_path / "twin.json", lambda d: d["machine"].update(cpu="Another CPU"))
    from sr_edge.bench import load_results

    res = load_results(lab["results"])
    cal = fit([res, load_results(twin)], [lab["bundles"]])
    check = check_estimates(res, cal, bundle_dirs=[lab["bundles"]])
    assert check.calibrated_on == ("tiny-cpu (Another CPU)",)
    assert len(check.rows) == sum(r.ok for r in res.rows) and -1.0 <= check.rho <= 1.0
    with pytest.raises(SrEdgeError, match="no other machine"):
        check_estimates(res, fit([res], [lab["bundles"]]), bundle_dirs=[lab["bundles"]])


def _tiny_graph(path: Path) -> Path:
    """conv 1->8 3x3, ReLU, conv 8->4 3x3, DepthToSpace(2): a hand-made x2 graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1 = numpy_helper.from_array(np.ones((8, 1, 3, 3), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((4, 8, 3, 3), np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["lr", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["c2"], ["sr"], blocksize=2, mode="CRD"),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("lr", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, [1, 1, "H", "W"])], [w1, w2],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_the_roofline_counts_macs_and_bytes_from_the_graph(tmp_path: Path) -> None:
    graph = _tiny_graph(tmp_path / "model.onnx")
    px = 40 * 30
    fp32, int8 = graph_cost(graph, 40, 30, "fp32"), graph_cost(graph, 40, 30, "int8")
    assert fp32.macs == px * (8 * 9 + 4 * 8 * 9) == int8.macs
    # conv1 reads 1 and writes 8 channels, conv2 reads 8 and writes 4, DepthToSpace reads and writes 4
    assert fp32.activation_bytes == 4 * px * (1 + 8 + 8 + 4 + 4 + 4)
    assert fp32.weight_bytes == 4 * (8 * 9 + 4 * 8 * 9) and fp32.bytes == 4 * int8.bytes
    assert [layer.op for layer in fp32.layers] == ["Conv", "Conv", "DepthToSpace"]
    plain, padded = roofline(fp32, 10.0, 1e6), roofline(fp32, 10.0, 1e6, lanes=16)
    assert plain.bound == "compute" and padded.seconds > plain.seconds  # 4 and 8 channels pad to 16
    assert roofline(fp32, 1e6, 1e-3).bound == "memory"
    with pytest.raises(SrEdgeError, match="precision"):
        graph_cost(graph, 40, 30, "fp8")


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / 10**0.5)  # ties take their mean rank
    with pytest.raises(SrEdgeError):
        spearman([1], [1])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("budget_ms", 0, "budget_ms"),
        ("budget_ms", float("nan"), "budget_ms"),
        ("scale", 5, "scale"),
        ("resolution", "640by360", "WIDTHxHEIGHT"),
        ("latency", "wall", "latency"),
        ("min_psnr", 200, "min_psnr"),
    ],
)
def test_options_are_validated(field: str, value: Any, match: str) -> None:
    with pytest.raises(SrEdgeError, match=match):
        SelectOptions(**{field: value})


def test_select_is_public_and_light() -> None:
    import sr_edge

    assert "select" in sr_edge.__all__ and sr_edge.select is select
    assert SelectOptions(resolution="320x180").resolution == Resolution(320, 180)
