"""``sr-edge report``: Markdown + Pareto plot + comparison sheet from a results file; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sr_edge.bench import SCHEMA, SCHEMA_VERSION, LatencyStats, Quality, Row, Timing, load_results, write_report
from sr_edge.bench.report import markdown, pareto_front
from sr_edge.data.io import read_image, write_image
from sr_edge.devices import load_profile
from sr_edge.errors import SrEdgeError


def stats(ms: float) -> LatencyStats:
    return LatencyStats.from_samples(np.array([ms * 0.99, ms, ms, ms * 1.05]), 2, ms * 4 / 1000, False)


def row(
    variant: str, backend: str, precision: str, frame: float, net: float | None, psnr: float, peer: str | None = None,
    skipped: bool = False, model: str | None = None,
) -> Row:  # fmt: skip
    rid = f"{variant}@{backend}/{precision}"
    if skipped:
        return Row(rid, variant, model or variant, 2, backend, precision, peer, "skipped", reason="no GPU here")
    return Row(
        rid, variant, model or variant.split("/")[0], 2, backend, precision, peer, "ok",
        build_s=0.1,
        latency={"64x48": Timing(stats(frame), stats(net) if net else None, 0.5, 10.0, 0.02)},
        quality={"Set5": Quality(psnr, 0.9, 5, {"butterfly": psnr - 3}), "Set14": Quality(psnr - 3, 0.85, 14)},
        memory={"rss_peak_mb": 300.0, "rss_delta_mb": 20.0, "resettable": True, "gpu_delta_mb": None},
        compute={"macs_per_lr_pixel": 1000.0, "unit": "GFLOP/s", "peak_gops": 473.6},
        crop=f"{rid.replace('/', '_').replace('@', '_')}.png",
    )  # fmt: skip


def results_file(folder: Path, rows: list[Row], **header: Any) -> Path:
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": "2026-01-01T00:00:00+00:00",
        "updated": "2026-01-01T00:01:00+00:00",
        "complete": True,
        "machine": {"cpu": "Test CPU", "affinity": 2, "system": "Linux", "release": "6", "python": "3.11"},
        "libraries": {"sr-edge": "0.1.0"},
        "git": {"commit": "0123456789abcdef", "dirty": False},
        "device": load_profile("ci-cpu").to_json(),
        "settings": {"datasets": ["Set5", "Set14"], "resolutions": ["64x48"], "threads": 2,
                     "latency": {"warmup": 2, "min_runs": 4, "min_time_s": 0.0, "max_time_s": 1.0}},
        "crops": {"folder": "r_crops", "dataset": "Set5", "image": "butterfly", "box": [0, 0, 24],
                  "hr": {"2": "hr_x2.png"}},
        **header,
        "rows": [r.to_json() for r in rows],
    }  # fmt: skip
    crops = folder / "r_crops"
    crops.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    write_image(crops / "hr_x2.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    for r in rows:
        if r.crop:
            write_image(crops / r.crop, rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    path = folder / "r.json"
    path.write_text(json.dumps(doc))
    return path


ROWS = [
    row("bicubic-x2", "numpy", "fp64", 20.0, None, 33.67, peer="bicubic"),
    row("opencv-espcn-x2", "opencv", "fp32", 30.0, 25.0, 34.76, peer="opencv", model="opencv-espcn"),
    row("espcn/x2", "torch", "fp32", 150.0, 140.0, 36.00, peer="torch"),
    row("espcn/x2", "openvino", "fp32", 40.0, 12.0, 36.00),
    row("espcn/x2", "ort", "fp32", 45.0, 15.0, 36.00),
    row("espcn/x2-int8", "openvino", "int8", 35.0, 6.0, 35.90),
    row("espcn/x2", "tensorrt", "fp16", 0, None, 0, skipped=True),
]


def test_pareto_front() -> None:
    pts = [(10.0, 30.0), (20.0, 32.0), (15.0, 29.0), (30.0, 31.0), (40.0, 33.0), (20.0, 32.0)]
    assert pareto_front(pts) == [0, 1, 5, 4]  # ties are both kept; (15, 29) and (30, 31) are dominated


def test_report_writes_markdown_plot_and_sheet(tmp_path: Path) -> None:
    files = write_report(results_file(tmp_path, ROWS))
    assert files.markdown == tmp_path / "r_report" / "report.md"
    text = files.markdown.read_text()
    for r in ROWS[:-1]:
        assert r.variant in text
    assert "| espcn/x2 | openvino | fp32 | 36.00 / 0.9000 | 33.00 / 0.8500 |" in text
    assert "## Not measured" in text and "espcn/x2@tensorrt/fp16 | skipped | no GPU here" in text
    # best model espcn/x2: its fastest row (openvino fp32, 40 ms frame) vs OpenCV ESPCN (30 ms) and eager (150 ms)
    opencv = "vs opencv-espcn-x2@opencv/fp32: +1.24 dB PSNR-Y, speed-up 0.75x (frame: 30.00 -> 40.00 ms), "
    assert opencv + "2.08x (network: 25.00 -> 12.00 ms)" in text
    assert "vs espcn/x2@torch/fp32: +0.00 dB PSNR-Y, speed-up 3.75x (frame: 150.00 -> 40.00 ms)" in text
    assert files.pareto is not None and files.sheets == (tmp_path / "r_report" / "sheet_x2.png",)
    for png in (files.pareto, *files.sheets):
        img = read_image(png)
        assert img.shape[0] > 200 and img.shape[1] > 200 and img.std() > 0
    assert "![Pareto plot](pareto.png)" in text
    assert not list((tmp_path / "r_report").glob(".*.tmp"))  # atomic writes leave no temp files


def test_markdown_marks_budget_and_front(tmp_path: Path) -> None:
    res = load_results(results_file(tmp_path, ROWS))
    lines = {line.split(" | ")[0].lstrip("| "): line for line in markdown(res).splitlines() if line.startswith("| ")}
    assert lines["bicubic-x2 (bicubic)"].endswith("| yes | **yes** |")  # fastest: on the front, inside 100 ms
    assert lines["espcn/x2 (torch)"].endswith("| no |  |")  # 150 ms: over the budget, dominated


def test_incomplete_run_is_flagged(tmp_path: Path) -> None:
    text = markdown(load_results(results_file(tmp_path, ROWS[:3], complete=False)))
    assert "INCOMPLETE" in text


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sr_edge", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def assert_one_line(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_cli_report(tmp_path: Path) -> None:
    path = results_file(tmp_path, ROWS)
    proc = run_cli("report", path, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(tmp_path / "out" / f) for f in ("report.md", "pareto.png", "sheet_x2.png")]


def test_cli_report_errors_are_one_line(tmp_path: Path) -> None:
    good = json.loads(results_file(tmp_path, ROWS).read_text())
    cases = {
        "empty.json": ("", "results file is empty"),
        "blank.json": ("\n\n", "results file is empty"),
        "v0.json": (json.dumps({**good, "schema_version": 0}), "results schema version 0"),
        "v99.json": (json.dumps({**good, "schema_version": 99}), "results schema version 99"),
        "foreign.json": (json.dumps({"benchmarks": []}), "not an sr-edge bench results file"),
        "norows.json": (json.dumps({**good, "rows": []}), "holds no rows"),
        "garbage.json": ("{not json", "not a JSON results file"),
        "unmeasured.json": (json.dumps({**good, "rows": [ROWS[-1].to_json()]}), "no row was measured"),
    }
    for name, (text, needle) in cases.items():
        (tmp_path / name).write_text(text)
        assert_one_line(run_cli("report", tmp_path / name), needle)
    assert_one_line(run_cli("report", tmp_path / "absent.json"), "does not exist")
    assert_one_line(run_cli("compare", tmp_path, tmp_path / "r.json"), "is a folder; pass the results JSON file")
    (tmp_path / "notes.md").write_text("mine")
    assert_one_line(run_cli("report", tmp_path / "r.json", "--out", tmp_path / "notes.md"), "is a file, not a folder")
    assert (tmp_path / "notes.md").read_text() == "mine"
    assert_one_line(run_cli("report", tmp_path / "r.json", "--dataset", "Urban100"), "not in the results")


def test_load_results_rejects_other_versions(tmp_path: Path) -> None:
    path = results_file(tmp_path, ROWS, schema_version=2)
    with pytest.raises(SrEdgeError, match="schema version 2, but this sr-edge reads version 1"):
        load_results(path)
