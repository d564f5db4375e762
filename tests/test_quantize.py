"""int8 quantisation: fake quantisers, the QDQ placements, the quantize pipeline (PTQ, QAT with
exact resume), the int8 bundle layout and every registered architecture. Tiny real runs:
the shipped ESPCN x2 on a few photo crops, the legacy exporter (seconds, not minutes)."""

from __future__ import annotations

import copy
import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from sr_edge.backends import available_backends, load_bundle  # noqa: E402
from sr_edge.backends.trt_check import check_tensorrt as check_graph  # noqa: E402
from sr_edge.bundle import MANIFEST, read_bundle  # noqa: E402
from sr_edge.compress.calib import calibrate  # noqa: E402
from sr_edge.compress.fakequant import fake_quant, unwrap_model, wrap_model  # noqa: E402
from sr_edge.compress.qdq import LayerQuant, insert_qdq, quantize_weight  # noqa: E402
from sr_edge.compress.quantize import QuantConfig, quantize  # noqa: E402
from sr_edge.data.io import write_image  # noqa: E402
from sr_edge.errors import SrEdgeError  # noqa: E402
from sr_edge.models import create_model, list_models  # noqa: E402

OPENVINO = "openvino" in available_backends()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """calib/ (3 photo crops), eval/ (2 crops), empty/ (no images)."""
    data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("quant")
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    out = {name: root / name for name in ("calib", "eval", "empty")}
    for folder in out.values():
        folder.mkdir()
    for i, img in enumerate(photos):
        write_image(out["calib"] / f"c{i}.png", np.ascontiguousarray(img[60 : 60 + 96, 80 : 80 + 112]))
    for i, img in enumerate(photos[:2]):
        write_image(out["eval"] / f"e{i}.png", np.ascontiguousarray(img[200 : 200 + 64, 150 : 150 + 72]))
    return out


def config(folders: dict[str, Path], tmp: Path, **kw: Any) -> QuantConfig:
    base: dict[str, Any] = dict(
        source="espcn",
        scale=2,
        mode="ptq",
        out=str(tmp / "bundle"),
        run_dir=str(tmp / "run"),
        calib_data=(str(folders["calib"]),),
        calib_images=3,
        data=(str(folders["calib"]),),
        eval_datasets=(str(folders["eval"]),),
        exporter="legacy",
        threads=1,
        steps=6,
        batch_size=2,
        patch_size=12,
        ckpt_every=1,
        val_every=100,
    )
    base.update(kw)
    return QuantConfig(**base)


def _lr(folders: dict[str, Path]) -> list[np.ndarray]:
    from sr_edge.compress.calib import calibration_set

    return calibration_set(sorted(folders["calib"].iterdir()), 2, "y", 3)


def _layers(net: Any, order: list[str]) -> list[LayerQuant]:
    from sr_edge.compress.pipeline import _layers as layers

    return layers(net, order, [])


# --- arithmetic ----------------------------------------------------------------------------


def test_fake_quant_is_the_qdq_arithmetic() -> None:
    """Round half to even, clamp to the grid, straight-through inside the range, LSQ on the scale."""
    x = torch.tensor([-2.0, -0.25, 0.125, 0.375, 0.5, 5.0], requires_grad=True)
    s = torch.tensor(0.25, requires_grad=True)
    y = fake_quant(x, s, -4, 3)
    assert y.tolist() == [-1.0, -0.25, 0.0, 0.5, 0.5, 0.75]  # 0.125/0.25 = 0.5 rounds to 0, 1.5 to 2
    y.sum().backward()
    assert x.grad is not None and x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert s.grad is not None and s.grad.item() == pytest.approx(-4 + 0 - 0.5 + 0.5 + 0 + 3)
    w = np.array([[[[0.5, -1.0]]], [[[0.005, 0.02]]]], np.float32)
    q = quantize_weight(w, np.array([1 / 127, 0.02 / 127], np.float32))
    assert q.dtype == np.int8 and q.reshape(2, 2).tolist() == [[64, -127], [32, 127]]


def test_placements_compute_what_the_fake_quantised_model_computes(folders: dict[str, Path]) -> None:
    """ESPCN (its input on the 256-code offset grid): torch fake quantisation, ORT on both files and
    OpenVINO on model.onnx agree; ORT fuses QLinearConv where it pays; model.onnx passes check-trt."""
    import onnxruntime as ort

    from sr_edge.compress.pipeline import _order, float_graph

    net = create_model("espcn", 2, pretrained=True).eval()
    q = wrap_model(copy.deepcopy(net))
    images = _lr(folders)
    calibrate(q, images)
    order = _order(q, 1)
    layers = _layers(q, order)
    # the image and both Relu outputs are never negative: all 256 codes on [0, clip]
    assert [layer.input_offset for layer in layers] == [128, 128, 128]
    graph, _ = float_graph(unwrap_model(copy.deepcopy(q)), 1, 2, 18, "legacy")
    trt, _ = insert_qdq(graph, layers, "inputs")
    ovg, _ = insert_qdq(graph, layers, "openvino")
    ortg, report = insert_qdq(graph, layers, "ort")
    x = images[0]
    with torch.no_grad():
        want = q(torch.from_numpy(x)).numpy()
    outs = {}
    for name, g in (("inputs", trt), ("openvino", ovg), ("ort", ortg)):
        so = ort.SessionOptions()
        # unfused, ORT computes the QDQ arithmetic exactly as written: the files' meaning
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(g.SerializeToString(), so, providers=["CPUExecutionProvider"])
        outs[name] = sess.run(None, {"lr": x})[0]
    # as deployed (sr-edge's ORT session: fused integer kernels, no per-tensor re-quantisation
    # of the float convs' weights by ORT's WeightBiasQuantization, which cost max 0.038 here)
    from sr_edge.backends.ort_backend import OrtOptions, ort_run_fn

    fused = ort_run_fn(ortg.SerializeToString(), OrtOptions(), "cpu")[0](x)
    assert np.abs(fused - np.clip(want, 0, 1)).mean() < 2e-4 and np.abs(fused - np.clip(want, 0, 1)).max() < 0.006
    # float sums in another order may flip a rounding (one step of one activation) somewhere
    for name in ("inputs", "openvino"):
        assert np.abs(outs[name] - want).mean() < 2e-4 and np.abs(outs[name] - want).max() < 0.02, name
    # the ORT file also rounds its output to the 1/255 grid of the image it becomes
    assert np.abs(outs["ort"] - np.clip(want, 0, 1)).max() < 0.006
    assert report.quantised_outputs == ["body.2"] and report.relu_folded == 1
    assert report.float_outputs == ["body.0", "body.4"]  # 1-channel input and 4 outputs: float conv is faster
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(folders["calib"].parent / "opt.onnx")
    ort.InferenceSession(ortg.SerializeToString(), so, providers=["CPUExecutionProvider"])
    import onnx

    fused = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    # body.2 as placed; ORT also folds body.0's Relu into the uint8 zero point that follows it
    assert fused.count("QLinearConv") >= 1 and "QuantizeLinear" in fused
    assert check_graph(trt).ok, check_graph(trt).problems
    if OPENVINO:
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(ovg.SerializeToString()), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        got = compiled({0: x})[compiled.output(0)]
        assert np.abs(got - want).mean() < 2e-4
        precisions = {
            str(op.get_rt_info()["runtimePrecision"].astype(str))
            for op in compiled.get_runtime_model().get_ordered_ops()
            if op.get_rt_info()["layerType"].astype(str) == "Convolution"
        }
        assert precisions & {"i8", "u8"}, precisions  # the convolutions run in int8


# --- the pipeline ----------------------------------------------------------------------------


def test_ptq_bundle_holds_one_graph_per_runtime(folders: dict[str, Path], tmp_path: Path) -> None:
    result = quantize(config(folders, tmp_path), progress=False)
    assert result.bundle == tmp_path / "bundle"
    b = read_bundle(result.bundle)
    assert b.precision == "int8" and b.name == "espcn-x2-int8"
    assert set(b.manifest["files"]) == {"model.onnx", "model-openvino.onnx", "model-ort.onnx"}
    assert b.onnx_for("tensorrt").name == "model.onnx" and b.onnx_for("torch").name == "model.onnx"
    quant = b.manifest["quantization"]
    # each CPU runtime runs its own placement unless another file measured better through it
    # here, recorded under this CPU's int8 class (VNNI or not), which is what load_bundle runs
    from sr_edge.devices.probe import int8_cpu_class

    assert set(quant["placement_choice"]) == set(b.manifest["placements_by_cpu"]) == {int8_cpu_class()}
    choice = quant["placement_choice"][int8_cpu_class()]
    own = {"openvino": "model-openvino.onnx", "ort": "model-ort.onnx"}
    for backend, c in choice.items():
        assert c["placed"] == own[backend] and set(c["psnr_y"]) == set(b.manifest["files"])
        assert b.placements[backend] == c["chosen"] and b.onnx_for(backend).name == c["chosen"]  # type: ignore[arg-type]
        assert b.manifest["placements_by_cpu"][int8_cpu_class()][backend] == c["chosen"]
        best = max(c["psnr_y"].values())
        assert c["chosen"] == own[backend] or c["psnr_y"][c["chosen"]] == best > c["psnr_y"][own[backend]] + 0.02
    assert quant["mode"] == "ptq" and quant["float_layers"] == []
    backends = ["ort", "openvino"] if OPENVINO else ["ort"]
    if b.onnx_for("ort").name != "model.onnx":
        backends.append("model.onnx@ort")  # TensorRT's file run by ORT, where ORT runs another
    assert sorted(quant["metrics"]) == sorted(backends)
    for backend in backends:
        drop = quant["drop_db"][backend]["eval"]
        assert -3.0 < drop < 0.5, drop  # calibrated only: a loss, not a collapse
    assert b.manifest["metrics"]["backend"] == "ort"
    # load_bundle opens the file of each backend's placement
    x = _lr(folders)[0]
    import onnxruntime as ort

    so = ort.SessionOptions()  # as the ort backend opens it (ORT must not re-quantise the float convs)
    so.add_session_config_entry("optimization.disable_specified_optimizers", "WeightBiasQuantization")
    sess = ort.InferenceSession(str(b.onnx_for("ort")), so, providers=["CPUExecutionProvider"])
    direct = sess.run(None, {"lr": x})[0]
    with load_bundle(result.bundle, backend="ort") as session:
        assert session.precision == "int8"
        np.testing.assert_allclose(session.run(x), direct, atol=1e-6)
    report = check_graph(__import__("onnx").load(str(b.onnx_for("tensorrt"))))
    assert report.ok, report.problems
    with pytest.raises(SrEdgeError, match="already exists"):
        quantize(config(folders, tmp_path), progress=False)


@pytest.mark.parametrize("engine", ["ort", "nncf"])
def test_library_ptq_baseline_writes_one_graph_every_runtime_runs(
    folders: dict[str, Path], tmp_path: Path, engine: str
) -> None:
    """The PTQ baselines the report compares QAT with: one QDQ graph, measured through each runtime."""
    if engine == "nncf":
        pytest.importorskip("nncf", reason="NNCF is in the train extra: pip install 'sr-edge[train]'")
    result = quantize(config(folders, tmp_path, ptq_engine=engine), progress=False)
    b = read_bundle(result.bundle)
    assert b.precision == "int8" and list(b.manifest["files"]) == ["model.onnx"]
    assert "placements" not in b.manifest  # nothing to choose: every backend runs model.onnx
    quant = b.manifest["quantization"]
    assert quant["engine"] == engine and quant["library"].startswith({"ort": "onnxruntime", "nncf": "nncf"}[engine])
    backends = ["ort", "openvino"] if OPENVINO else ["ort"]
    assert sorted(quant["metrics"]) == sorted(backends) and "placement_choice" not in quant
    for backend in backends:
        assert -6.0 < quant["drop_db"][backend]["eval"] < 0.5  # calibrated only: a loss, not a collapse
        assert b.onnx_for(backend).name == "model.onnx"  # type: ignore[arg-type]


def test_bench_plans_int8_rows_beside_float(folders: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from sr_edge.bench import BenchSettings, plan
    from sr_edge.devices import Resolution, load_profile
    from sr_edge.paths import bundles_dir

    root = tmp_path / "bundles" / "espcn"
    shutil.copytree(bundles_dir() / "espcn" / "x2", root / "x2")
    quantize(config(folders, tmp_path, out=str(root / "x2-int8")), progress=False)
    s = BenchSettings(
        bundles_dir=tmp_path / "bundles", datasets=(str(folders["eval"]),), resolutions=(Resolution(48, 32),),
        scales=(2,), peers=(),
    )  # fmt: skip
    ids = [c.id for c in plan(load_profile("ci-cpu"), s).contenders]
    assert "espcn/x2-int8@ort/int8" in ids and "espcn/x2@ort/fp32" in ids
    if OPENVINO:
        assert {"espcn/x2-int8@openvino/int8", "espcn/x2@openvino/bf16", "espcn/x2@openvino/fp32"} <= set(ids)
    assert not any(i.startswith("espcn/x2-int8@") and not i.endswith("/int8") for i in ids)


def test_empty_calibration_folder_is_one_line_and_writes_nothing(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SrEdgeError, match="no images") as e:
        quantize(config(folders, tmp_path, calib_data=(str(folders["empty"]),)), progress=False)
    assert "\n" not in str(e.value)
    assert not any(tmp_path.iterdir())


def test_max_drop_db(folders: dict[str, Path], tmp_path: Path) -> None:
    """0 dB cannot be met by any int8 layer: one line, nothing written. A budget that needs float
    layers keeps the most sensitive ones in float and lists them; the measured drop fits."""
    with pytest.raises(SrEdgeError, match="cannot be met") as e:
        quantize(config(folders, tmp_path, max_drop_db=0.0), progress=False)
    assert "\n" not in str(e.value) and not any(tmp_path.iterdir())
    sens = quantize(config(folders, tmp_path, sensitivity=True), progress=False)
    assert sens.bundle is None and [s.name for s in sens.sensitivity] == ["body.0", "body.2", "body.4"]
    assert all(s.drop_db > -0.2 for s in sens.sensitivity) and not any(tmp_path.iterdir())
    worst = max(sens.sensitivity, key=lambda s: s.drop_db)

    # the budget: what the runtimes lose here with the worst layer in float (torch's fake
    # quantisation ranks the layers; the fused integer kernels of each CPU class set the drop)
    def lost(result: Any) -> float:
        return max(-d["eval"] for d in result.metrics["drop_db"].values())

    total = lost(quantize(config(folders, tmp_path / "all"), progress=False))
    one_float = lost(quantize(config(folders, tmp_path / "one", float_layers=(worst.name,)), progress=False))
    budget = round(max(one_float, 0.0) + 0.002, 4)
    if budget >= total:
        pytest.skip(f"ESPCN loses {total:.3f} dB here, {one_float:.3f} with {worst.name} float: nothing to trade")
    result = quantize(config(folders, tmp_path / "mixed", max_drop_db=budget), progress=False)
    assert result.float_layers and result.float_layers[0] == worst.name
    manifest = json.loads((tmp_path / "mixed" / "bundle" / MANIFEST).read_text())
    assert manifest["quantization"]["float_layers"] == list(result.float_layers)
    assert all(-d["eval"] <= budget + 1e-6 for d in result.metrics["drop_db"].values())


def test_qat_fine_tune_resumes_exactly_after_ctrl_c(
    folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A QAT run stopped by SIGINT (as Ctrl-C) after step 3 and resumed ends with exactly the
    weights and scales of an uninterrupted run, and both give a bundle."""
    from sr_edge.checkpoint import load_checkpoint
    from sr_edge.compress import pipeline

    full = quantize(config(folders, tmp_path / "full", mode="qat"), progress=False)
    assert full.bundle is not None and full.step == 6

    original = pipeline._loss
    calls = {"n": 0}

    def interrupting(teacher: Any, weight: float) -> Any:
        inner = original(teacher, weight)

        def loss(sr: Any, hr: Any, lr: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends; the trainer finishes the step
            return inner(sr, hr, lr)

        return loss

    monkeypatch.setattr(pipeline, "_loss", interrupting)
    cut = quantize(config(folders, tmp_path / "cut", mode="qat"), progress=False)
    assert cut.interrupted and cut.bundle is None and cut.step == 3
    assert not (tmp_path / "cut" / "bundle").exists()
    with pytest.raises(SrEdgeError, match="--resume"):
        quantize(config(folders, tmp_path / "cut", mode="qat"), progress=False)
    monkeypatch.setattr(pipeline, "_loss", original)
    resumed = quantize(config(folders, tmp_path / "cut", mode="qat"), resume=True, progress=False)
    assert resumed.bundle is not None and resumed.step == 6
    a = load_checkpoint(tmp_path / "full" / "run" / "last.safetensors").state_dict
    b = load_checkpoint(tmp_path / "cut" / "run" / "last.safetensors").state_dict
    assert set(a) == set(b) and any(k.endswith("aq.log_scale") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma = json.loads((tmp_path / "full" / "bundle" / MANIFEST).read_text())["quantization"]
    assert ma["mode"] == "qat" and ma["fine_tune"]["steps"] == 6


def test_config_errors_are_one_line() -> None:
    for kw, match in (
        ({"mode": "int4"}, "mode must be"),
        ({"max_drop_db": -1.0}, "max_drop_db"),
        ({"ptq_engine": "ort"}, "mode ptq"),
        ({"mode": "ptq", "ptq_engine": "nncf", "max_drop_db": 0.1}, "sr-edge's own"),
        ({"calib_images": 0}, "calib_images"),
    ):
        with pytest.raises(SrEdgeError, match=match):
            QuantConfig("espcn", 2, **kw)


def test_old_bundles_name_no_placement(tmp_path: Path) -> None:
    import shutil

    from sr_edge.paths import bundles_dir

    b = read_bundle(bundles_dir() / "espcn" / "x2")
    assert b.placements == {} and b.onnx_for("ort") == b.onnx_path
    bad = tmp_path / "b"
    shutil.copytree(b.path, bad)
    doc = json.loads((bad / MANIFEST).read_text())
    doc["placements"] = {"ort": "missing.onnx"}
    (bad / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(SrEdgeError, match="placement for ort"):
        read_bundle(bad)
    doc["placements"] = {}
    doc["placements_by_cpu"] = {"vnni": {"openvino": "missing.onnx"}}
    (bad / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(SrEdgeError, match=r"placement for openvino names 'missing\.onnx'"):
        read_bundle(bad)
    doc["placements_by_cpu"] = ["vnni"]
    (bad / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(SrEdgeError, match="'placements_by_cpu' must map CPU classes"):
        read_bundle(bad)


# --- every registered architecture ------------------------------------------------------------

# the largest zoo models at one block: the same layers and wiring, seconds instead of minutes
_SMALL = {"rrdbnet": {"nb": 1}, "edsr-baseline": {"n_resblocks": 1}, "edsr-small": {"n_resblocks": 1}}


@pytest.mark.parametrize("name", list_models())
def test_every_registered_architecture_quantises_or_says_why(name: str) -> None:
    """Wrap, calibrate, export the float graph, insert both placements and run them: works, or
    fails with one line naming the reason."""
    import onnxruntime as ort

    from sr_edge.compress.pipeline import _order, float_graph

    torch.manual_seed(0)
    try:
        net = create_model(name, 2, **_SMALL.get(name, {})).deploy().eval()
        q = wrap_model(copy.deepcopy(net))
        x = np.random.default_rng(0).random((1, net.channels, 16, 20), dtype=np.float32)
        calibrate(q, [x])
        layers = _layers(q, _order(q, net.channels))
        graph, _ = float_graph(unwrap_model(copy.deepcopy(q)), net.channels, 2, 18, "legacy")
        graphs = [insert_qdq(graph, layers, p)[0] for p in ("inputs", "ort")]
    except SrEdgeError as e:
        assert "\n" not in str(e) and str(e)
        return
    with torch.no_grad():
        want = q(torch.from_numpy(x)).numpy()
    for g in graphs:
        y = ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
        assert y.shape == want.shape and np.isfinite(y).all()
    assert check_graph(graphs[0]).ok, check_graph(graphs[0]).problems


def test_placements_recheck_records_this_cpu_class(tmp_path: Path) -> None:
    """``python -m sr_edge.compress.placements``: a shipped int8 bundle's files measured here, the
    choice recorded under this CPU's class (what load_bundle then runs); a float bundle is a
    one-line refusal that leaves its manifest as it was."""
    import shutil

    from sr_edge.compress.placements import main, recheck
    from sr_edge.devices.probe import int8_cpu_class
    from sr_edge.paths import PROJECT_ROOT

    src = PROJECT_ROOT / "export" / "espcn" / "x2-int8"
    bundle = tmp_path / "x2-int8"
    shutil.copytree(src, bundle)
    doc = json.loads((bundle / "manifest.json").read_text())
    doc.pop("placements_by_cpu")
    doc["quantization"].pop("placement_choice")
    (bundle / "manifest.json").write_text(json.dumps(doc))
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.png", "b.png"):  # a tiny evaluation set: two real photo crops
        shutil.copyfile(_photo_crop(tmp_path, name), data / name)
    choice = recheck(bundle, str(data))
    b = read_bundle(bundle)
    here = int8_cpu_class()
    assert b.manifest["placements_by_cpu"] == {here: {k: c["chosen"] for k, c in choice.items()}}
    assert b.manifest["quantization"]["placement_choice"][here] == choice
    for backend, c in choice.items():
        assert set(c["psnr_y"]) == set(b.manifest["files"]) and b.onnx_for(backend).name == c["chosen"]
    assert b.placements == json.loads((src / "manifest.json").read_text())["placements"]  # untouched
    fp32 = tmp_path / "x2"
    shutil.copytree(PROJECT_ROOT / "export" / "espcn" / "x2", fp32)
    before = (fp32 / "manifest.json").read_bytes()
    assert main([str(fp32), "-d", str(data)]) == 2
    assert (fp32 / "manifest.json").read_bytes() == before


def _photo_crop(tmp_path: Path, name: str) -> Path:
    from skimage import data as skdata

    crop = skdata.astronaut()[40 + 30 * len(name) : 136 + 30 * len(name), 100:196]
    return write_image(tmp_path / f"src_{name}", np.ascontiguousarray(crop))
