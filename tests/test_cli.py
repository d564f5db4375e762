"""The CLI end to end, in a subprocess: tables, JSON, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sr_edge.data import read_image, write_image
from tests.helpers import zero_size_png


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sr_edge", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_eval_json_on_default_images() -> None:
    proc = run_cli("eval", "bicubic", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["model"] == "bicubic" and doc["dataset"] == "samples" and doc["scale"] == 2
    assert len(doc["images"]) == 5 and doc["psnr_y"] == pytest.approx(np.mean([i["psnr_y"] for i in doc["images"]]))


def test_eval_several_datasets_and_scales_one_table(shared_datasets: Path) -> None:
    proc = run_cli(
        "eval", "bicubic", "--dataset", "Set5", "Set14", "--scale", "2", "4", "--data-root", shared_datasets / "eval"
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| bicubic")]
    assert len(rows) == 4
    assert "| Set5    | x2    | 5      | 33.67" in proc.stdout


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    good = write_image(tmp_path / "good.png", np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = good.read_bytes()
    (tmp_path / "text.png").write_text("not an image\n")
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    zero_size_png(tmp_path / "zero.png")
    write_image(tmp_path / "tiny.png", np.zeros((2, 3, 3), np.uint8))
    return {
        "text": tmp_path / "text.png",
        "truncated": tmp_path / "truncated.png",
        "zero": tmp_path / "zero.png",
        "missing": tmp_path / "missing.png",
        "tiny": tmp_path / "tiny.png",
    }


@pytest.mark.parametrize("kind", ["text", "truncated", "zero", "missing"])
def test_upscale_bad_image_one_line(tmp_path: Path, bad_inputs: dict[str, Path], kind: str) -> None:
    proc = run_cli("upscale", "bicubic", bad_inputs[kind], "--out", tmp_path / "out.png")
    assert_one_line_error(proc, bad_inputs[kind].name)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("kind", ["text", "truncated", "zero", "tiny"])
def test_eval_dataset_with_bad_image_one_line(tmp_path: Path, bad_inputs: dict[str, Path], kind: str) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    bad_inputs[kind].rename(folder / bad_inputs[kind].name)
    proc = run_cli("eval", "bicubic", "--dataset", folder, "--scale", "4")
    assert_one_line_error(proc, bad_inputs[kind].name)


@pytest.mark.parametrize("scale", ["0", "7", "two"])
def test_bad_scale_one_line(scale: str) -> None:
    assert_one_line_error(run_cli("eval", "bicubic", "--scale", scale), "scale")


def test_missing_dataset_and_model_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("eval", "bicubic", "--dataset", tmp_path / "nope"), "does not exist")
    assert_one_line_error(run_cli("eval", "no-such-model"), "unknown model")


def test_wrong_data_root_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    """A mistyped --data-root used to fall through to ../shared (eval) or the samples (bench, export)."""
    missing, a_file = tmp_path / "nope", tmp_path / "f.txt"
    a_file.write_text("x")
    for root, what in ((missing, "does not exist"), (a_file, "is a file, not a folder")):
        assert_one_line_error(run_cli("eval", "bicubic", "-d", "Set5", "--data-root", root), f"data root {root} {what}")
        proc = run_cli("bench", "--device", "ci-cpu", "--data-root", root, "--dry-run")
        assert_one_line_error(proc, f"data root {root} {what}")
    assert a_file.read_text() == "x"


def test_unknown_option_names_its_verb_and_the_nearest_option() -> None:
    assert_one_line_error(run_cli("eval", "bicubic", "--datset", "Set5"), "sr-edge eval:", "did you mean --dataset?")
    proc = run_cli("bench", "--backends", "ort", "--dry-run")
    assert_one_line_error(proc, "--backends ort", "did you mean --backend?", "see sr-edge bench --help")
    assert_one_line_error(run_cli("models", "--zzz"), "unrecognized arguments: --zzz (see sr-edge models --help)")


def test_upscale_keeps_alpha_and_refuses_to_overwrite(tmp_path: Path, photo: np.ndarray) -> None:
    rgba = np.concatenate([photo, np.full((*photo.shape[:2], 1), 200, np.uint8)], axis=-1)
    src = write_image(tmp_path / "in.png", rgba)
    out = tmp_path / "out.png"
    proc = run_cli("upscale", "bicubic", src, "--out", out, "--scale", "3")
    assert proc.returncode == 0, proc.stderr
    result = read_image(out)
    assert result.shape == (photo.shape[0] * 3, photo.shape[1] * 3, 4) and np.all(result[..., 3] == 200)
    out.write_bytes(b"user's file")
    assert_one_line_error(run_cli("upscale", "bicubic", src, "--out", out), "already exists")
    assert out.read_bytes() == b"user's file"
    assert_one_line_error(run_cli("upscale", "bicubic", src, "--out", src, "--overwrite"), "overwrite the input")


def test_upscale_checks_every_output_before_writing_any(tmp_path: Path, photo: np.ndarray) -> None:
    (tmp_path / "sub").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    first = write_image(tmp_path / "a.png", photo)
    same_name = write_image(tmp_path / "sub" / "a.png", photo)
    other = write_image(tmp_path / "b.png", photo)
    proc = run_cli("upscale", "bicubic", other, first, same_name, "--out", out)
    assert_one_line_error(proc, "a.png", "both be written to", "a_x2.png")
    assert not any(out.iterdir())  # b.png came first and was not written either
    (out / "a_x2.png").write_bytes(b"user's file")
    assert_one_line_error(run_cli("upscale", "bicubic", other, first, "--out", out), "already exists")
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.png"] and (out / "a_x2.png").read_bytes() == b"user's file"
    assert_one_line_error(run_cli("upscale", "bicubic", other, tmp_path / "nope.png", "--out", out), "nope.png")
    # a folder upscales on its own (sr-edge upscale MODEL DIR --out OUTDIR), not among image files
    assert_one_line_error(run_cli("upscale", "bicubic", tmp_path / "sub", other, "--out", out), "is a folder")
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.png"]


def test_upscale_image_given_as_the_model_one_line(tmp_path: Path, photo: np.ndarray) -> None:
    src = write_image(tmp_path / "a.png", photo)
    assert_one_line_error(run_cli("upscale", src, "fsrcnn", "--out", tmp_path / "x.png"), "a.png", "not a model")
    assert_one_line_error(run_cli("eval", src), "a.png", "not a model")


def test_training_run_folder_given_as_the_model_one_line(tmp_path: Path, photo: np.ndarray) -> None:
    """A run folder (what sr-edge train --out wrote) names the checkpoint to use instead."""
    src = write_image(tmp_path / "a.png", photo)
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.safetensors").write_bytes(b"")
    for args in (["eval", run, "-s", "2"], ["upscale", run, src, "--out", tmp_path / "x.png"], ["export", run]):
        assert_one_line_error(run_cli(*args), "a training run folder", str(run / "best.safetensors"))
    assert not (tmp_path / "x.png").exists() and not Path("export/run").exists()


def test_file_system_refusal_is_one_line(tmp_path: Path, photo: np.ndarray) -> None:
    src = write_image(tmp_path / "a.png", photo)
    # a folder asked for under an existing file: the OS refuses, the CLI says so in one line
    proc = run_cli("upscale", "bicubic", src, "--out", tmp_path / "a.png" / "x.png")
    assert_one_line_error(proc, "a.png")
    if Path("/proc/self").is_dir():  # a folder that exists but takes no new files (even for root)
        proc = run_cli("upscale", "bicubic", src, "--out", "/proc/sr-edge-x2.png")
        assert_one_line_error(proc, "/proc/sr-edge-x2.png: ")  # the path given, not the hidden temp file
        assert ".tmp" not in proc.stderr
    pytest.importorskip("torch")
    assert_one_line_error(run_cli("export", "espcn", "--scale", "2", "--out", src / "bundle"), "a.png is a file")
    assert read_image(src).shape == photo.shape


def test_upscale_16bit_stays_16bit(tmp_path: Path, photo: np.ndarray) -> None:
    src = write_image(tmp_path / "in16.png", photo.astype(np.uint16) * 257 + 3)
    proc = run_cli("upscale", "bicubic", src, "--out", tmp_path / "out16.png")
    assert proc.returncode == 0, proc.stderr
    out = read_image(tmp_path / "out16.png")
    assert out.dtype == np.uint16 and np.any(out % 257 != 0)


def test_eval_bad_checkpoints_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_text("not a checkpoint")
    assert_one_line_error(run_cli("eval", garbage), "garbage.safetensors")
    assert_one_line_error(run_cli("eval", tmp_path / "missing.safetensors"), "no such checkpoint")
