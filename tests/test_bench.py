"""The benchmark harness on tiny random-weight bundles built in a temp folder.

Quality must come from the deployed backend (a backend that perturbs its output changes
the PSNR), an interrupted run keeps its finished rows and resumes, unavailable backends
and broken contenders become rows with a reason, and a regression against a baseline
fails the comparison. Settings are tiny (48x32 frames, 2-3 timed runs): these tests
check behaviour, never speed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sr_edge.bench import BenchSettings, LatencyPlan, benchmark, compare, load_results, measure_latency, plan
from sr_edge.bench.results import Results
from sr_edge.devices import Resolution, load_profile
from sr_edge.errors import SrEdgeError

pytest.importorskip("torch")
pytest.importorskip("onnxscript")

FAST = LatencyPlan(warmup=1, min_runs=2, min_time_s=0.0, max_time_s=5.0)


def _quantize(src: Path, dst: Path) -> Path:
    """An int8 QDQ copy of a float bundle (ORT static quantisation on random calibration data)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from sr_edge.provenance import sha256_file

    manifest = json.loads((src / "manifest.json").read_text())
    channels = manifest["channels"]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"lr": rng.random((1, channels, 24, 24), dtype=np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    dst.mkdir(parents=True)
    quantize_static(
        str(src / "model.onnx"), str(dst / "model.onnx"), Reader(),
        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        per_channel=True,
    )  # fmt: skip
    manifest["precision"] = "int8"
    manifest["files"] = {"model.onnx": {"sha256": sha256_file(dst / "model.onnx")}}
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """bundles/espcn/x2 (fp32, from a checkpoint), bundles/espcn/x2-int8 (QDQ), a 2-image dataset."""
    import torch

    from sr_edge.checkpoint import save_checkpoint
    from sr_edge.data.io import write_image
    from sr_edge.export import export_bundle
    from sr_edge.models import create_model

    root = tmp_path_factory.mktemp("lab")
    torch.manual_seed(0)
    model = create_model("espcn", 2)
    ckpt = save_checkpoint(root / "espcn_x2.safetensors", "espcn", 2, model.state_dict())
    bundles = root / "bundles"
    fp32 = export_bundle(ckpt, bundles / "espcn" / "x2", measure=False)
    _quantize(fp32, bundles / "espcn" / "x2-int8")
    data = root / "data" / "tiny"
    data.mkdir(parents=True)
    rng = np.random.default_rng(1)
    base = np.linspace(0, 255, 72 * 60).reshape(60, 72)
    for i in range(2):
        img = np.clip(base[..., None] * [1.0, 0.7, 0.4] + rng.normal(0, 12, (60, 72, 3)), 0, 255).astype(np.uint8)
        write_image(data / f"img{i}.png", img)
    return {"root": root, "bundles": bundles, "data": data, "fp32": fp32, "int8": bundles / "espcn" / "x2-int8"}


def settings(lab: dict[str, Path], **kw: Any) -> BenchSettings:
    base: dict[str, Any] = {
        "bundles_dir": lab["bundles"],
        "datasets": (str(lab["data"]),),
        "resolutions": (Resolution(48, 32),),
        "scales": (2,),
        "peers": ("bicubic",),
        "latency": FAST,
        "crop_size": 24,
    }
    base.update(kw)
    return BenchSettings(**base)


def test_latency_plan_meets_count_and_time() -> None:
    now = [0]

    def clock() -> int:
        return now[0]

    def work() -> None:
        now[0] += 10_000_000  # 10 ms per call

    stats = measure_latency(work, LatencyPlan(warmup=2, min_runs=3, min_time_s=0.1, max_time_s=1.0), clock)
    assert stats.runs == 10 and stats.p50_ms == pytest.approx(10.0) and not stats.truncated  # time bound won
    stats = measure_latency(work, LatencyPlan(warmup=0, min_runs=20, min_time_s=0.0, max_time_s=1.0), clock)
    assert stats.runs == 20  # count bound won
    stats = measure_latency(work, LatencyPlan(warmup=0, min_runs=500, min_time_s=0.0, max_time_s=0.05), clock)
    assert stats.truncated and stats.runs == 5
    with pytest.raises(SrEdgeError, match="minimum runs"):
        LatencyPlan(min_runs=0)


def test_latency_rounds_keep_the_best_round(lab: dict[str, Path], tmp_path: Path) -> None:
    """Rounds are passes over the matrix; each row reports its lowest-p50 round and lists them all."""
    with pytest.raises(SrEdgeError, match="latency rounds"):
        LatencyPlan(rounds=0)
    out = tmp_path / "r.json"
    s = settings(lab, backends=("ort",), precisions=("fp32",), latency=dataclasses.replace(FAST, warmup=4, rounds=3))
    results = benchmark(load_profile("ci-cpu"), s, out=out)
    assert results.rows and all(r.ok for r in results.rows)
    for row in results.rows:
        for t in row.latency.values():
            # The full warm-up only before a row's first timing: the network-only timing
            # follows frames through the same network, and later rounds reopen with 1.
            assert t.frame.warmup in (4, 1) and (t.model is None or t.model.warmup == 1)
            for stats in (t.frame, t.model):
                if stats is None:
                    continue
                assert len(stats.round_p50_ms) == 3 and stats.p50_ms == min(stats.round_p50_ms)
            if t.model is not None and t.gops_per_frame:
                assert t.achieved_gops == pytest.approx(t.gops_per_frame / (t.model.p50_ms / 1000), rel=1e-3)
    again = load_results(out)
    assert again.header["complete"] and [r.to_json() for r in again.rows] == [r.to_json() for r in results.rows]


def test_plan_matrix(lab: dict[str, Path]) -> None:
    p = plan(load_profile("ci-cpu"), settings(lab, peers=("bicubic", "torch", "opencv")))
    ids = [c.id for c in p.contenders]
    assert ids[0] == "bicubic-x2@numpy/fp64"
    assert "opencv-espcn-x2@opencv/fp32" in ids
    assert "espcn/x2@torch/fp32" in ids and "espcn/x2-int8@torch/fp32" not in ids  # eager peer on float weights
    for rid in ("espcn/x2@openvino/fp32", "espcn/x2@openvino/bf16", "espcn/x2@ort/fp32"):
        assert rid in ids
    assert "espcn/x2-int8@openvino/int8" in ids and "espcn/x2-int8@ort/int8" in ids
    assert "espcn/x2@ort/int8" not in ids and "espcn/x2-int8@openvino/fp32" not in ids  # no silent quantisation
    assert ids.index("espcn/x2@openvino/fp32") < ids.index("espcn/x2@ort/fp32")  # the profile's preference order
    with pytest.raises(SrEdgeError, match="no bundle under"):
        plan(load_profile("ci-cpu"), settings(lab, models=("edsr",)))


def _ort_with_offset(offset: float) -> Any:
    from sr_edge.backends.ort_backend import OrtBackend, OrtSession

    class Perturbed(OrtSession):
        def _infer(self, x: np.ndarray) -> np.ndarray:
            return super()._infer(x) + np.float32(offset)

        def _frame_fn(self) -> Any:  # the frame graph's uint8 output, shifted the same way
            frame = super()._frame_fn()
            shift = round(offset * 255)

            def shifted(x: np.ndarray) -> tuple[np.ndarray, float]:
                out, total = frame(x)
                return np.clip(out.astype(np.int16) + shift, 0, 255).astype(np.uint8), total

            return shifted

    class Backend(OrtBackend):
        def open(self, bundle: Any, precision: Any, device: str, options: Any) -> OrtSession:
            return Perturbed(bundle, precision, device, options)

    return Backend()


def test_quality_comes_from_the_deployed_backend(lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_edge.backends import api, load_upscaler
    from sr_edge.data.datasets import resolve_dataset
    from sr_edge.evaluate import evaluate

    s = settings(lab, backends=("ort",), precisions=("fp32",), peers=(), models=("espcn/x2",), crops=False)
    clean = benchmark(load_profile("ci-cpu"), s).row("espcn/x2@ort/fp32")
    assert clean is not None and clean.ok, clean
    ds = resolve_dataset(str(lab["data"]))
    expected = evaluate(load_upscaler(lab["fp32"], "ort"), ds)
    assert clean.quality["tiny"].psnr_y == pytest.approx(expected.psnr_y, abs=1e-3)

    monkeypatch.setitem(api.BACKENDS, "ort", _ort_with_offset(0.05))
    perturbed = benchmark(load_profile("ci-cpu"), s).row("espcn/x2@ort/fp32")
    assert perturbed is not None and perturbed.ok
    assert abs(perturbed.quality["tiny"].psnr_y - clean.quality["tiny"].psnr_y) > 0.2  # random weights: either way


def test_interrupted_run_keeps_rows_and_resumes(lab: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    s = settings(lab, backends=("ort",))
    profile = load_profile("ci-cpu")
    seen: list[str] = []

    def stop_after_two(row: Any) -> None:
        seen.append(row.id)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        benchmark(profile, s, out=out, on_row=stop_after_two)
    partial = load_results(out)
    assert [r.id for r in partial.rows] == seen and not partial.header["complete"]
    assert all(r.ok for r in partial.rows)

    with pytest.raises(SrEdgeError, match="already exists; pass --resume"):
        benchmark(profile, s, out=out)
    with pytest.raises(SrEdgeError, match="another device profile or settings"):
        benchmark(profile, dataclasses.replace(s, latency=LatencyPlan(1, 3, 0.0, 5.0)), out=out, resume=True)

    full = benchmark(profile, s, out=out, resume=True)
    ids = [c.id for c in plan(profile, s).contenders]
    assert [r.id for r in full.rows] == ids and load_results(out).header["complete"]
    for kept in partial.rows:  # finished rows were kept, not re-measured
        assert full.row(kept.id) == kept


def test_ctrl_c_a_runtime_swallows_still_ends_the_run(
    lab: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGINT that a runtime turns into its own error mid-row ends the run; that row is not kept."""
    import os
    import signal

    import sr_edge.bench.runner as runner

    real, calls = runner.run_row, []

    def swallowing(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # the second row: Ctrl-C lands inside a runtime that eats it
            try:
                os.kill(os.getpid(), signal.SIGINT)
                signal.sigtimedwait([], 0.2)  # let the handler run here, inside the "runtime"
            except BaseException:
                pass  # a runtime turning the KeyboardInterrupt into its own error
        return real(*args, **kw)

    monkeypatch.setattr(runner, "run_row", swallowing)
    out = tmp_path / "r.json"
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (not under nohup)
    try:
        with pytest.raises(KeyboardInterrupt):
            benchmark(load_profile("ci-cpu"), settings(lab, backends=("ort",)), out=out)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the runner's handler is gone
    finally:
        signal.signal(signal.SIGINT, inherited)
    partial = load_results(out)
    assert len(calls) == 2 and len(partial.rows) == 1 and not partial.header["complete"]


def test_ctrl_c_keeps_finished_rows(lab: dict[str, Path], tmp_path: Path) -> None:
    """A real SIGINT to ``sr-edge bench``: exit 130, finished rows on disk, --resume completes."""
    import os
    import signal
    import time

    out = tmp_path / "r.json"
    args = [sys.executable, "-m", "sr_edge", "bench", "--device", "ci-cpu", "--bundles", str(lab["bundles"])]
    args += ["-d", str(lab["data"]), "--resolution", "48x32", "--backend", "ort", "--peers", "bicubic", "--no-crops"]
    args += ["--models", "espcn/x2"]
    # each latency phase takes 3 s, so the SIGINT sent when the first row lands finds the second
    # row running. That window opens with the runtimes' first imports, which once turned a
    # Ctrl-C into "ort not installed" (a skipped row, exit 0) or an onnx segfault; the runner
    # now imports them before the first row.
    slow = ["--warmup", "0", "--min-runs", "2", "--min-time", "3", "--max-time", "3", "--rounds", "1"]
    # faulthandler: a child that hangs is sent SIGABRT and its stderr then holds every
    # thread's Python stack, so a hang fails with where it hung, not just a timeout
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    # the child gets Ctrl-C as from a terminal even where this run ignores it (nohup, a background job):
    # an ignored SIGINT is inherited, and the bench then rightly runs on to the end
    proc = subprocess.Popen(
        [*args, *slow, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def stacks(what: str) -> str:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=60)
        return f"{what}; the child's stacks and stderr:\n{err[-8000:]}"

    try:
        deadline = time.monotonic() + 120
        while not (out.is_file() and out.stat().st_size and json.loads(out.read_text())["rows"]):
            if proc.poll() is not None:
                pytest.fail(f"bench exited ({proc.returncode}) before its first row: {proc.communicate()[1][-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(stacks("no row landed within 120 s"))
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(stacks("bench did not exit within 120 s of SIGINT"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "continue with --resume" in err, err
    doc = json.loads(out.read_text())
    assert len(doc["rows"]) == 1 and not doc["complete"] and all(r["status"] == "ok" for r in doc["rows"])
    done = subprocess.run([*args, *slow, "--out", str(out), "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = json.loads(out.read_text())
    assert final["complete"] and len(final["rows"]) == 2 and final["rows"][0] == doc["rows"][0]


def test_unavailable_backend_and_broken_row(lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_edge.backends import api
    from sr_edge.backends.openvino_backend import OpenVinoBackend
    from sr_edge.backends.ort_backend import OrtBackend

    class Missing(OpenVinoBackend):
        def available(self) -> bool:
            return False

    class Broken(OrtBackend):
        def open(self, *args: Any, **kw: Any) -> Any:
            raise RuntimeError("driver exploded\nwith a second line")

    monkeypatch.setitem(api.BACKENDS, "openvino", Missing())
    monkeypatch.setitem(api.BACKENDS, "ort", Broken())
    s = settings(lab, precisions=("fp32",), models=("espcn/x2",), crops=False)
    results = benchmark(load_profile("ci-cpu"), s)
    ov = results.row("espcn/x2@openvino/fp32")
    ort = results.row("espcn/x2@ort/fp32")
    assert ov is not None and ov.status == "skipped" and "pip install 'sr-edge[openvino]'" in (ov.reason or "")
    assert (
        ort is not None and ort.status == "failed" and ort.reason == "RuntimeError: driver exploded with a second line"
    )
    assert results.row("bicubic-x2@numpy/fp64").ok  # type: ignore[union-attr]


def test_results_say_when_the_steady_heap_was_refused(
    lab: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sr_edge.bench import heap

    @contextlib.contextmanager
    def refused(mode: str = "steady") -> Iterator[bool]:
        yield False

    monkeypatch.setattr(heap, "steady_heap", refused)
    out = tmp_path / "r.json"
    benchmark(load_profile("ci-cpu"), settings(lab, backends=("ort",), precisions=("fp32",), crops=False), out=out)
    doc = json.loads(out.read_text())
    assert "refused mallopt" in doc["settings"]["heap"] or "not glibc" in doc["settings"]["heap"]
    assert doc["fingerprint"]["heap"] == heap.describe("steady")  # resume still matches the request


def test_results_record_provenance_and_figures(lab: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    s = settings(lab, backends=("ort",), precisions=("fp32", "int8"))
    benchmark(load_profile("ci-cpu"), s, out=out)
    doc = json.loads(out.read_text())
    assert doc["schema"] == "sr-edge-bench" and doc["schema_version"] == 1 and doc["complete"]
    assert doc["machine"]["cpu"] and "onnxruntime" in doc["libraries"] and "commit" in doc["git"]
    assert doc["device"]["name"] == "ci-cpu" and doc["settings"]["resolutions"] == ["48x32"]
    assert doc["settings"]["latency"] == dataclasses.asdict(FAST) and doc["settings"]["datasets"] == ["tiny"]
    assert doc["settings"]["heap"].startswith("steady") and "heap" in doc["fingerprint"]
    results = load_results(out)
    row = results.row("espcn/x2@ort/fp32")
    assert row is not None and row.ok
    t = row.latency["48x32"]
    assert t.frame.runs >= 2 and t.model is not None and t.model.p50_ms > 0
    assert t.frame.p50_ms <= t.frame.p90_ms <= t.frame.p99_ms and t.frame.fps > 0
    from sr_edge.models import create_model, model_stats

    macs = model_stats(create_model("espcn", 2).deploy(), 1, 2).macs_per_output_pixel * 4  # per LR pixel
    assert row.compute is not None and row.compute["macs_per_lr_pixel"] == pytest.approx(macs)
    assert t.gops_per_frame is not None and t.achieved_gops is not None
    assert t.gops_per_frame == pytest.approx(2 * macs * 48 * 32 / 1e9, rel=1e-3)
    assert t.achieved_gops == pytest.approx(t.gops_per_frame / (t.model.p50_ms / 1000), rel=1e-2)
    assert t.efficiency == pytest.approx(t.achieved_gops / 473.6, rel=1e-2)
    assert row.memory is not None and row.memory["rss_peak_mb"] > 0 and row.build_s is not None
    int8 = results.row("espcn/x2-int8@ort/int8")
    assert int8 is not None and int8.ok and int8.compute["unit"] == "GOP/s"  # type: ignore[index]
    crops = doc["crops"]
    folder = out.parent / crops["folder"]
    assert (folder / crops["hr"]["2"]).is_file() and (folder / str(row.crop)).is_file()


def _shifted(results: Results, row_id: str, factor: float, psnr_drop: float = 0.0) -> Results:
    rows = []
    for r in results.rows:
        if r.id == row_id:
            lat = {
                k: dataclasses.replace(
                    t,
                    frame=dataclasses.replace(t.frame, p50_ms=t.frame.p50_ms * factor),
                    model=dataclasses.replace(t.model, p50_ms=t.model.p50_ms * factor) if t.model else None,
                )
                for k, t in r.latency.items()
            }
            qual = {k: dataclasses.replace(q, psnr_y=q.psnr_y - psnr_drop) for k, q in r.quality.items()}
            r = dataclasses.replace(r, latency=lat, quality=qual)
        rows.append(r)
    return Results(results.header, tuple(rows), results.path)


def test_compare_flags_regressions(lab: dict[str, Path]) -> None:
    base = benchmark(load_profile("ci-cpu"), settings(lab, backends=("ort",), precisions=("fp32",), crops=False))
    rid = "espcn/x2@ort/fp32"
    assert not any(c.regressed for c in compare(base, base))
    assert not any(c.regressed for c in compare(_shifted(base, rid, 1.05), base, tolerance=0.1))
    slow = [c for c in compare(_shifted(base, rid, 1.25), base, tolerance=0.1) if c.regressed]
    assert [c.row_id for c in slow] == [rid] and "model p50" in slow[0].metric
    worse = [c for c in compare(_shifted(base, rid, 1.0, psnr_drop=0.2), base) if c.regressed]
    assert [c.metric for c in worse] == ["PSNR tiny"]
    gone = Results(base.header, tuple(r for r in base.rows if r.id != rid), None)
    assert [c.metric for c in compare(gone, base) if c.regressed] == ["status"]


def test_cli_bench_report_compare(lab: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.json"

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sr_edge", *map(str, args)], capture_output=True, text=True, timeout=600
        )

    common: list[str | Path] = [
        "--device",
        "ci-cpu",
        "--bundles",
        lab["bundles"],
        "-d",
        lab["data"],
        "--resolution",
        "48x32",
    ]
    common += ["--backend", "ort", "--precision", "fp32", "--peers", "bicubic", "--quick", "--models", "espcn/x2"]
    proc = cli("bench", *common, "--out", out, "--report")
    assert proc.returncode == 0, proc.stderr
    assert "espcn/x2@ort/fp32" in proc.stdout and (tmp_path / "r_report" / "report.md").is_file()
    assert (tmp_path / "r_report" / "pareto.png").is_file() and (tmp_path / "r_report" / "sheet_x2.png").is_file()
    assert "\n- heap: steady" in (tmp_path / "r_report" / "report.md").read_text()

    plain = tmp_path / "plain.json"
    proc = cli("bench", *common, "--out", plain, "--heap", "default", "--no-crops")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(plain.read_text())["settings"]["heap"].startswith("default")

    proc = cli("bench", *common, "--dry-run")
    assert proc.returncode == 0 and "| espcn/x2@ort/fp32     | will run |" in proc.stdout, proc.stderr

    proc = cli("bench", *common, "--out", out)
    assert proc.returncode == 2 and "--resume" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    for bad, says in ((["--max-time", "-1"], "--max-time"), (["--rounds", "0"], "latency rounds")):
        full = [a for a in common if a != "--quick"]  # --quick sets its own single round
        proc = cli("bench", *full, "--out", tmp_path / "never.json", *bad)
        assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "never.json").exists()

    doc = json.loads(out.read_text())
    for row in doc["rows"]:  # a baseline where everything was 3x faster: the current run regressed
        for t in row["latency"].values():
            for kind in ("frame", "model"):
                if t[kind]:
                    t[kind]["p50_ms"] /= 3
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(doc))
    proc = cli("compare", out, baseline, "--tolerance", "0.1")
    assert proc.returncode == 1 and "REGRESSION" in proc.stdout, proc.stdout + proc.stderr
    proc = cli("compare", out, out)
    assert proc.returncode == 0 and "REGRESSION" not in proc.stdout


def test_settings_validation(lab: dict[str, Path]) -> None:
    with pytest.raises(SrEdgeError, match="unknown peer"):
        BenchSettings(peers=("waifu2x",))
    with pytest.raises(SrEdgeError, match="crop size"):
        BenchSettings(crop_size=50)
    with pytest.raises(SrEdgeError, match="heap must be one of steady, default"):
        BenchSettings(heap="jemalloc")
    with pytest.raises(SrEdgeError, match="unknown backend"):
        plan(load_profile("ci-cpu"), settings(lab, backends=("coreml",)))
    with pytest.raises(SrEdgeError, match="nothing to measure on ci-cpu"):
        plan(load_profile("ci-cpu"), settings(lab, bundles_dir=lab["root"] / "no-bundles", peers=()))
    with pytest.raises(SrEdgeError, match=r"data root .*no-such-root does not exist"):
        BenchSettings(data_root=str(lab["root"] / "no-such-root"))
    with pytest.raises(SrEdgeError, match="dataset 'NoSuchSet' not found"):  # named by the user: an error
        plan(load_profile("ci-cpu"), settings(lab, datasets=(str(lab["data"]), "NoSuchSet")))
    profile = load_profile("ci-cpu")
    profile = dataclasses.replace(
        profile, workload=dataclasses.replace(profile.workload, datasets=(str(lab["data"]), "NoSuchSet"))
    )
    p = plan(profile, settings(lab, datasets=None))  # the profile's: measured on what is there, the rest listed
    assert [d.name for d in p.datasets] == ["tiny"] and p.datasets_missing == ("NoSuchSet",)
    assert p.settings_json()["datasets_missing"] == ["NoSuchSet"]
    (lab["root"] / "EmptySet").mkdir()  # a profile's dataset found but empty is an error, not "missing"
    empty = dataclasses.replace(profile.workload, datasets=(str(lab["data"]), str(lab["root"] / "EmptySet")))
    with pytest.raises(SrEdgeError, match="EmptySet holds no images"):
        plan(dataclasses.replace(profile, workload=empty), settings(lab, datasets=None))
    broken = lab["root"] / "broken"
    shutil.copytree(lab["bundles"], broken)
    (broken / "espcn" / "x2" / "model.onnx").write_bytes(b"tampered")
    p = plan(load_profile("ci-cpu"), settings(lab, bundles_dir=broken))
    assert len(p.bundle_errors) == 1 and "espcn/x2" in p.bundle_errors[0] and "sha256" in p.bundle_errors[0]
    assert all(c.variant != "espcn/x2" for c in p.contenders)


def test_deployment_side_imports_no_torch(lab: dict[str, Path]) -> None:
    """Benchmarking bundles on ORT/OpenVINO with the non-torch peers never imports torch."""
    code = (
        "import sys\n"
        "from sr_edge.bench import benchmark, BenchSettings, LatencyPlan\n"
        "from sr_edge.devices import load_profile, Resolution\n"
        f"s = BenchSettings(bundles_dir={str(lab['bundles'])!r}, datasets=({str(lab['data'])!r},),\n"
        "    resolutions=(Resolution(48, 32),), peers=('bicubic', 'opencv'), latency=LatencyPlan(0, 1, 0.0, 1.0))\n"
        "rows = benchmark(load_profile('ci-cpu'), s).rows\n"
        "assert rows and all(r.status != 'failed' for r in rows), [(r.id, r.reason) for r in rows]\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_openvino_names_a_precision_it_does_not_run(lab: dict[str, Path]) -> None:
    pytest.importorskip("openvino")
    from sr_edge.backends import load_bundle
    from sr_edge.backends.openvino_backend import OpenVinoBackend, precision_fallback

    assert precision_fallback("bf16", "bf16", "CPU") is None and precision_fallback("fp32", "f32", "CPU") is None
    assert precision_fallback("int8", "f32", "CPU") is None  # QDQ convolutions run int8 under an f32 hint
    assert precision_fallback("bf16", "f32", "CPU") == "OpenVINO runs f32, not bf16, on this CPU"
    # On this machine: a bf16 session either runs bf16 (AVX512_BF16/AMX) or says it does not,
    # and the forecast that builds nothing (bench --dry-run) agrees with it.
    forecast = OpenVinoBackend().not_native("bf16", "cpu")
    with load_bundle(lab["fp32"], "openvino", "bf16") as half:
        assert half.execution_precision in ("bf16", "f32")
        assert (half.fallback is None) == (half.execution_precision == "bf16"), half.fallback
        assert (forecast is None) == (half.fallback is None), forecast
    assert OpenVinoBackend().not_native("fp32", "cpu") is None and OpenVinoBackend().not_native("int8", "cpu") is None
    with load_bundle(lab["fp32"], "openvino", "fp32") as full:
        assert full.execution_precision == "f32" and full.fallback is None


def test_a_precision_the_runtime_would_not_run_is_skipped(
    lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("openvino")
    from sr_edge.backends import api
    from sr_edge.backends.openvino_backend import OpenVinoBackend

    class NoBf16(OpenVinoBackend):  # a CPU without native bf16, on any machine
        def not_native(self, precision: Any, device: str) -> str | None:
            return "OpenVINO would not run bf16 on this CPU" if precision == "bf16" else None

        def open(self, bundle: Any, precision: Any, device: str, options: Any) -> Any:
            session = super().open(bundle, precision, device, options)
            if precision == "bf16":
                session.fallback = "OpenVINO runs f32, not bf16, on this CPU"
            return session

    monkeypatch.setitem(api.BACKENDS, "openvino", NoBf16())
    s = settings(lab, backends=("openvino",), precisions=("fp32", "bf16"), peers=(), models=("espcn/x2",))
    from sr_edge.bench.cli import _forecast

    listed = {c.id: _forecast(c) for c in plan(load_profile("ci-cpu"), s).contenders}  # what --dry-run prints
    assert listed == {
        "espcn/x2@openvino/fp32": "will run",
        "espcn/x2@openvino/bf16": "will be skipped: OpenVINO would not run bf16 on this CPU",
    }
    results = benchmark(load_profile("ci-cpu"), dataclasses.replace(s, crops=False))
    half, full = results.row("espcn/x2@openvino/bf16"), results.row("espcn/x2@openvino/fp32")
    assert full is not None and full.ok
    assert half is not None and half.status == "skipped" and half.latency == {}
    assert half.reason == (
        "OpenVINO runs f32, not bf16, on this CPU; the row would be fp32 under another name "
        "(bench where bf16 is native, or drop it from the profile)"
    )
    from sr_edge.resolve import create_upscaler  # upscale / eval: the images are right; say what runs

    capsys.readouterr()
    up = create_upscaler(str(lab["fp32"]), 2, "openvino", "bf16")
    assert up(np.zeros((8, 8, 3), np.uint8)).shape == (16, 16, 3)
    assert capsys.readouterr().err == "sr-edge: warning: OpenVINO runs f32, not bf16, on this CPU\n"


def test_results_say_when_the_machine_is_not_the_profiles(
    lab: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sr_edge import devices
    from sr_edge.bench.compare import misfit
    from sr_edge.bench.report import write_report

    s = settings(lab, backends=("ort",), precisions=("fp32",), peers=(), models=("espcn/x2",), crops=False)
    zen3 = devices.MachineFacts("x86_64", "AMD EPYC", 2, frozenset({"avx2", "fma"}), None, ())
    monkeypatch.setattr(devices, "probe_machine", lambda: zen3)
    off = tmp_path / "off.json"
    benchmark(load_profile("ci-cpu"), s, out=off)
    fit = json.loads(off.read_text())["device_fit"]
    assert fit["matches"] is False and any(r.startswith("NOT CPU flags") for r in fit["reasons"])
    note = misfit(load_results(off))
    assert note is not None and note.startswith("measured on a machine that is not a ci-cpu (CPU flags")
    assert "avx512_bf16" in note and "not a ci-cpu" in write_report(off, tmp_path / "rep").markdown.read_text()

    zen5 = dataclasses.replace(zen3, isa=frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))
    monkeypatch.setattr(devices, "probe_machine", lambda: zen5)
    on = tmp_path / "on.json"
    benchmark(load_profile("ci-cpu"), s, out=on)
    assert json.loads(on.read_text())["device_fit"]["matches"] is True and misfit(load_results(on)) is None

    proc = subprocess.run(
        [sys.executable, "-m", "sr_edge", "compare", str(off), str(on), "--tolerance", "9"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("sr-edge: warning:")]
    assert proc.returncode == 0 and len(warnings) == 1 and str(off) in warnings[0], proc.stderr
    assert warnings[0].endswith("latency checks compare different hardware")
