"""Issue 19: every failure is one clear line, and no user file is ever lost.

One test (or more) per case the hostile-user run found, and tests of the mechanisms that
fixed them: the CLI's error boundary (:mod:`sr_edge.boundary`), validate-then-act with
write-beside-then-rename for ``--overwrite``, temp files removed on every caught exit and
swept on the next run, and the check of network outputs for NaN/Inf. Most run in-process
through :func:`sr_edge.cli.main`; signals, ``/dev/full`` and ``kill -9`` need a process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sr_edge.data.io import read_image, write_image
from sr_edge.errors import SrEdgeError
from sr_edge.paths import bundles_dir

ESPCN_X2 = bundles_dir() / "espcn" / "x2"


class Ran:
    """What one in-process ``sr-edge`` command did."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def one_line_error(self, *needles: str, code: int = 2) -> str:
        """The error, one line and the last on stderr (progress lines of a run may come before it)."""
        assert self.code == code, (self.code, self.err)
        assert "Traceback" not in self.err, self.err
        lines = self.err.strip().splitlines()
        said = [line for line in lines if line.startswith("sr-edge")]
        assert len(said) == 1 and lines[-1] == said[0], self.err
        for needle in needles:
            assert needle in said[0], said[0]
        return said[0]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli(*args)``: ``sr-edge ARGS`` run by ``sr_edge.cli.main`` in this process."""
    from sr_edge.cli import main

    def run(*args: object) -> Ran:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # a usage error
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def proc_cli(*args: object, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sr_edge", *map(str, args)], capture_output=True, text=True, timeout=300, **kw
    )


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def temps_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".*.tmp"))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return write_image(tmp_path / "in.png", np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB file system, where a write runs out of space for real (a tmpfs mount: root only).

    The tests that use it have a portable twin that injects the same ENOSPC error.
    """
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def enospc() -> OSError:
    """What ``write()`` raises on a full disk: an errno and no file name."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --- tracebacks that are now one line ---------------------------------------------------------


def test_symlink_loop_among_the_inputs_is_one_line(cli: Any, tmp_path: Path, image: Path) -> None:
    (tmp_path / "loop1.png").symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(tmp_path / "loop1.png")
    out = tmp_path / "out"
    out.mkdir()
    cli("upscale", "bicubic", tmp_path / "loop1.png", "--out", out / "x.png").one_line_error("loop1.png", "symbolic")
    cli("upscale", "bicubic", image, tmp_path / "loop1.png", "--out", out).one_line_error("loop1.png", "symbolic")
    with pytest.raises(SrEdgeError, match="symbolic links"):
        read_image(tmp_path / "loop1.png")
    assert list(out.iterdir()) == []


def test_pathlib_symlink_loop_runtime_error_is_mapped() -> None:
    # Path.resolve() raises RuntimeError("Symlink loop from ...") before Python 3.13
    from sr_edge.boundary import _line_for

    line = _line_for(RuntimeError("Symlink loop from '/data/a.png'"))
    assert line is not None and "/data/a.png" in line and "symbolic links" in line
    assert _line_for(RuntimeError("something else")) is None  # other RuntimeErrors stay bugs


@pytest.mark.parametrize("device", ["cuda:abc", "cuda:", "cuda:-1", "cuda:²"])
def test_ort_device_with_a_bad_index_is_one_line(cli: Any, image: Path, tmp_path: Path, device: str) -> None:
    cli("eval", ESPCN_X2, "--backend", "ort", "--device", device).one_line_error("ort device", repr(device))
    cli("upscale", ESPCN_X2, image, "--out", tmp_path / "o.png", "--backend", "ort", "--device", device).one_line_error(
        repr(device)
    )
    assert not (tmp_path / "o.png").exists()


def test_full_disk_during_upscale_injected(
    cli: Any, tmp_path: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sr_edge.data import io

    def full(self: Any, kind: bytes, data: bytes) -> None:
        raise enospc()

    monkeypatch.setattr(io.PngBandWriter, "_chunk", full)
    out = tmp_path / "out.png"
    cli("upscale", "bicubic", image, "--out", out).one_line_error(str(out), "no space left")
    assert not out.exists() and temps_under(tmp_path) == []


def test_full_disk_during_upscale(cli: Any, full_disk: Path, tmp_path: Path) -> None:
    big = write_image(tmp_path / "big.png", np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    for tile in ("0", "32"):  # whole image, and tiles streamed in bands
        cli("upscale", "bicubic", big, "--out", full_disk / "o.png", "--tile", tile).one_line_error(
            str(full_disk / "o.png"), "no space left"
        )
        assert list(full_disk.iterdir()) == []  # no temp file, no partial output


def _tiny_export(cli: Any, out: Path) -> Ran:
    return cli("export", "espcn", "--scale", "2", "--out", out, "--no-eval", "--no-simplify", "--exporter", "legacy")


def test_full_disk_during_export_injected(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    real = Path.write_bytes

    def write_bytes(self: Path, data: Any) -> int:
        if self.name == "model.onnx":
            raise enospc()
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    out = tmp_path / "bundle"
    _tiny_export(cli, out).one_line_error(str(out), "no space left")
    assert list(tmp_path.iterdir()) == []  # no bundle, no temp folder


def test_full_disk_during_export(cli: Any, full_disk: Path) -> None:
    pytest.importorskip("torch")
    _tiny_export(cli, full_disk / "bundle").one_line_error(str(full_disk / "bundle"), "no space left")
    assert list(full_disk.iterdir()) == []


def _train_data(root: Path) -> Path:
    root.mkdir()
    for i in range(4):
        write_image(root / f"{i}.png", np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return root


def _train(cli: Any, data: Path, out: Path, steps: int, *extra: str) -> Ran:
    return cli(
        "train", "espcn", "--scale", "2", "--data", data, "--out", out, "--steps", steps, "--batch-size", 2,
        "--patch-size", 8, "--val-fraction", 0, "--ckpt-every", 1, "--log-every", 1, "--threads", 1, *extra,
    )  # fmt: skip


def test_full_disk_during_train_injected_leaves_no_run_folder(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    import safetensors.torch

    def full(*a: Any, **k: Any) -> None:  # how safetensors reports it: its own error, the OS error in text
        raise Exception("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    data, run = _train_data(tmp_path / "data"), tmp_path / "run"
    _train(cli, data, run, 2).one_line_error("last.safetensors", "no space left")
    assert not run.exists()  # not a folder holding only log.jsonl


def test_full_disk_during_train(cli: Any, full_disk: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    _train(cli, _train_data(tmp_path / "data"), full_disk / "run", 2).one_line_error("no space left")
    assert list(full_disk.iterdir()) == []


def test_failed_new_run_in_an_existing_folder_removes_only_its_own_files(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", lambda *a, **k: (_ for _ in ()).throw(enospc()))
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    _train(cli, _train_data(tmp_path / "data"), run, 2).one_line_error("no space left")
    assert files_under(run) == {"notes.txt": b"mine"}


def test_stdout_on_a_full_device_is_one_line() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "sr_edge", "devices"], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "sr-edge: error: standard output: no space left on the device; free some space or write to another disk, "
        "then run again"
    ]


def test_stdout_into_a_closed_pipe_is_one_line() -> None:
    p = subprocess.Popen([sys.executable, "-m", "sr_edge", "devices"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # the reader is gone before the first line (as `| head -0`)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "standard output" in lines[0] and "broken pipe" in lines[0], err


# --- silent success on bad input ----------------------------------------------------------------


def test_nan_checkpoint_is_an_error_naming_the_model(cli: Any, tmp_path: Path, image: Path) -> None:
    torch = pytest.importorskip("torch")
    from sr_edge.checkpoint import save_checkpoint
    from sr_edge.models import create_model

    model = create_model("espcn", 2)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    ckpt = save_checkpoint(tmp_path / "nan.safetensors", "espcn", 2, model.state_dict())
    out = tmp_path / "o.png"
    cli("upscale", ckpt, image, "--out", out).one_line_error("espcn", "NaN or Inf")
    assert not out.exists() and temps_under(tmp_path) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_every_network_output_is_checked(bad: float) -> None:
    from sr_edge.upscale import NetworkUpscaler

    def net(x: np.ndarray) -> np.ndarray:
        y = np.zeros((1, x.shape[1], 2 * x.shape[2], 2 * x.shape[3]), np.float32)
        y[0, 0, 3, 5] = bad  # one pixel is enough
        return y

    lr = np.zeros((4, 6, 3), np.uint8)
    for mode in ("rgb", "y"):
        with pytest.raises(SrEdgeError, match="broken-net: the network's output holds NaN or Inf"):
            NetworkUpscaler("broken-net", 2, mode, net)(lr)
    ok = NetworkUpscaler("fine", 2, "rgb", lambda x: np.full((1, 3, 8, 12), 3e37, np.float32))  # sums to inf: fine
    with np.errstate(over="ignore"):
        assert ok(lr).shape == (8, 12, 3)


def test_a_bundle_session_goes_through_the_check() -> None:
    pytest.importorskip("onnxruntime")
    from sr_edge.backends import load_bundle

    with load_bundle(ESPCN_X2, "ort") as session:
        session._infer = lambda x: np.full((1, 1, 2 * x.shape[2], 2 * x.shape[3]), np.nan, np.float32)  # type: ignore[method-assign]
        with pytest.raises(SrEdgeError, match="espcn@ort/fp32: the network's output holds NaN"):
            # the numpy path runs _infer; the frame graph's own check: tests/test_frame_graph.py
            session.upscaler(frame_path="numpy")(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize(
    "args",
    [
        ("upscale", "bicubic", "{image}", "--out", ""),
        ("train", "espcn", "--scale", "2", "--out", ""),
        ("report", "{results}", "--out", ""),
        ("eval", "bicubic", "--dataset", ""),
        ("bench", "--out", "", "--dry-run"),
        ("upscale", "bicubic", "", "--out", "{tmp}/x.png"),
    ],
    ids=["upscale", "train", "report", "eval-dataset", "bench", "positional"],
)
def test_an_empty_argument_is_refused(
    cli: Any, tmp_path: Path, image: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    from tests.test_report import ROWS, results_file

    results = results_file(tmp_path, ROWS)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # where an empty --out used to write
    filled = [a.format(image=image, results=results, tmp=tmp_path) for a in args]
    cli(*filled).one_line_error("empty value")
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("kind", ["animated-gif", "gif", "webp", "apng", "multipage-tiff"])
def test_formats_outside_the_four_are_refused_by_name(cli: Any, tmp_path: Path, kind: str) -> None:
    from PIL import Image

    frames = [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(3)]
    name, fmt, many = {
        "animated-gif": ("a.gif", "GIF", True), "gif": ("a.gif", "GIF", False), "webp": ("a.webp", "WEBP", False),
        "apng": ("a.png", "PNG", True), "multipage-tiff": ("a.tif", "TIFF", True),
    }[kind]  # fmt: skip
    src = tmp_path / name
    frames[0].save(src, format=fmt, save_all=many, append_images=frames[1:] if many else [])
    needle = {"animated-gif": "GIF image", "gif": "GIF image", "webp": "WEBP image", "apng": "animated PNG of 3 frames",
              "multipage-tiff": "of 3 frames"}[kind]  # fmt: skip
    with pytest.raises(SrEdgeError, match=needle):
        read_image(src)
    out = tmp_path / "o.png"
    cli("upscale", "bicubic", src, "--out", out).one_line_error(needle)
    assert not out.exists()


def test_decompression_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    for depth in (8, 16):  # 16-bit PNG goes through pypng, which has no limit of its own
        bomb = tmp_path / f"bomb{depth}.png"
        ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, depth, 2, 0, 0, 0)
        body = chunk(b"IDAT", zlib.compress(b"\0" * (1 << 20)))
        bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + body + chunk(b"IEND", b""))
        with pytest.raises(SrEdgeError, match=r"too large|over the limit"):
            read_image(bomb)


# --- user files lost ----------------------------------------------------------------------------


def _quick_bench(*extra: object) -> tuple[object, ...]:
    return ("bench", "--device", "ci-cpu", "--models", "espcn/x2", "--no-peers", "--no-quality", "--no-crops",
            "--quick", "--resolution", "32x24", "--backend", "ort", "--precision", "fp32", "--rounds", "1",
            *extra)  # fmt: skip


def test_bench_overwrite_keeps_the_old_file_when_the_run_is_refused(cli: Any, tmp_path: Path) -> None:
    from tests.test_report import ROWS, results_file

    old = results_file(tmp_path, ROWS)
    before = files_under(tmp_path)
    cli("bench", "--device", "ci-cpu", "--models", "no-such-model", "--out", old, "--overwrite").one_line_error(
        "no-such-model"
    )
    assert files_under(tmp_path) == before  # refused before anything was touched


def test_bench_overwrite_replaces_only_with_a_complete_run(cli: Any, tmp_path: Path) -> None:
    from tests.test_report import ROWS, results_file

    old = results_file(tmp_path, ROWS)
    (tmp_path / f"{old.stem}_crops").mkdir(exist_ok=True)
    (tmp_path / f"{old.stem}_crops" / "hr_x2.png").write_bytes(b"old crop")
    stale = tmp_path / f".{old.name}.k1ll3d99.tmp"  # what a kill -9 of an earlier --overwrite run left
    stale.mkdir()
    (stale / old.name).write_text("{}")
    ran = cli(*_quick_bench("--out", old, "--overwrite"))
    assert ran.code == 0, ran.err
    assert f"removed {stale.name}" in ran.err
    doc = json.loads(old.read_text())
    assert doc["complete"] is True and [r["id"] for r in doc["rows"]] == ["espcn/x2@ort/fp32"]
    assert not (tmp_path / f"{old.stem}_crops").exists()  # the old run's crops went with it
    assert temps_under(tmp_path) == []


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SrEdgeError("a row's runtime failed"), "terminated"])
def test_bench_overwrite_interrupted_keeps_the_old_file(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: Any
) -> None:
    import sr_edge.bench as bench
    from sr_edge.errors import Terminated
    from tests.test_report import ROWS, results_file

    old = results_file(tmp_path, ROWS)
    before = old.read_bytes()

    def halfway(profile: Any, settings: Any, out: Path, **kw: Any) -> None:
        Path(out).write_text('{"half": "written"}')  # the new run's partial file, wherever it goes
        raise Terminated() if stop == "terminated" else stop

    monkeypatch.setattr(bench, "benchmark", halfway)
    ran = cli(*_quick_bench("--out", old, "--overwrite"))
    if stop == "terminated":
        assert ran.code == 143 and "terminated (SIGTERM)" in ran.err and "unchanged" in ran.err, ran.err
    elif stop is KeyboardInterrupt:
        assert ran.code == 130 and "unchanged" in ran.err, ran.err
    else:
        ran.one_line_error("a row's runtime failed")
    assert old.read_bytes() == before and temps_under(tmp_path) == []


def test_report_refuses_to_replace_a_report_without_overwrite(cli: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from tests.test_report import ROWS, results_file

    results = results_file(tmp_path, ROWS)
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "report.md").write_text("my notes")
    (rep / "pareto.png").write_bytes(b"my plot")
    cli("report", results, "--out", rep).one_line_error("report.md already exists", "--overwrite")
    assert files_under(rep) == {"report.md": b"my notes", "pareto.png": b"my plot"}
    ran = cli("report", results, "--out", rep, "--overwrite")
    assert ran.code == 0, ran.err
    assert (rep / "report.md").read_text() != "my notes" and read_image(rep / "pareto.png").ndim == 3
    # bench --report refuses before measuring anything
    cli(*_quick_bench("--out", tmp_path / "new.json", "--report", rep)).one_line_error("report.md already exists")
    assert not (tmp_path / "new.json").exists()


# --- leftovers: a folder upscale stopped midway ------------------------------------------------


def _upscale_folder(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sr_edge", "upscale", "bicubic", str(src), "--out", str(out), "--scale", "4",
            "--recursive"]  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_folder_upscale_stopped_midway_then_rerun_is_complete(tmp_path: Path, sig: int) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    names = [f"img{i:02d}.png" for i in range(16)] + [f"sub/deep{i}.png" for i in range(4)]
    for i, name in enumerate(names):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        write_image(src / name, np.random.default_rng(i).integers(0, 256, (128, 128, 3), dtype=np.uint8))
    proc = subprocess.Popen(_upscale_folder(src, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(list(out.rglob("img*.png"))) < 3:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be stopped"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err, err
        assert temps_under(out) == []  # removed on the way out
    else:
        assert proc.returncode == -signal.SIGKILL
    done = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert 3 <= len(done) < len(names)
    # an earlier killed --overwrite left a temp beside an output that now exists (skipped, not re-written)
    (out / f".{done[0]}.zz99kill.tmp").write_bytes(b"")
    again = subprocess.run(_upscale_folder(src, out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == sorted(names)  # complete
    for name in names:
        assert read_image(out / name).shape == (512, 512, 3), name  # each decodes whole
    assert temps_under(out) == []


def test_image_list_runs_sweep_their_stale_temps(cli: Any, tmp_path: Path, image: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".in_x2.png.a1b2c3d4.tmp"
    stale.write_bytes(b"")
    other = out / ".notes.txt.a1b2c3d4.tmp"  # not the temp of a planned output: left alone
    other.write_bytes(b"")
    ran = cli("upscale", "bicubic", image, "--out", out)
    assert ran.code == 0, ran.err
    assert not stale.exists() and other.exists() and read_image(out / "in_x2.png").shape == (48, 64, 3)


# --- Ctrl-C during export ------------------------------------------------------------------------


@pytest.mark.parametrize("swallow", ["wrapped", "swallowed"])
def test_ctrl_c_inside_the_dynamo_exporter_is_not_a_fallback(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swallow: str
) -> None:
    pytest.importorskip("torch")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler in this test process")
    from sr_edge.export import convert

    legacy_calls: list[int] = []

    def dynamo(net: Any, example: Any, opset: int) -> Any:
        try:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands inside the exporter ...
            time.sleep(1)
        except KeyboardInterrupt:
            if swallow == "wrapped":  # ... which turns it into an error of its own
                raise RuntimeError("torch._dynamo: tracing failed") from None
            return None  # ... or swallows it whole
        raise AssertionError("SIGINT did not arrive")

    monkeypatch.setattr(convert, "_export_dynamo", dynamo)
    monkeypatch.setattr(convert, "_export_legacy", lambda *a: legacy_calls.append(1))
    out = tmp_path / "bundle"
    ran = cli("export", "espcn", "--scale", "2", "--out", out, "--no-eval")
    assert ran.code == 130 and "interrupted" in ran.err, ran.err
    assert legacy_calls == [] and list(tmp_path.iterdir()) == []


# --- misleading messages -------------------------------------------------------------------------


def test_bench_with_only_a_tampered_bundle_says_so(cli: Any, tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    shutil.copytree(ESPCN_X2, root / "espcn" / "x2")
    onnx_file = root / "espcn" / "x2" / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-5] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    line = cli("bench", "--device", "ci-cpu", "--bundles", root, "--no-peers", "--dry-run").one_line_error(
        "unreadable", "espcn/x2"
    )
    assert "sha256" in line
    cli("bench", "--device", "ci-cpu", "--bundles", root, "--models", "espcn").one_line_error("sha256")


def test_check_trt_on_a_bundle_missing_only_its_manifest(cli: Any, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    bundle = tmp_path / "b"
    bundle.mkdir()
    shutil.copy(ESPCN_X2 / "model.onnx", bundle / "model.onnx")
    cli("check-trt", bundle).one_line_error("without manifest.json", "re-export")


def test_existing_paths_of_the_wrong_kind_are_not_called_missing(cli: Any, tmp_path: Path, image: Path) -> None:
    cli("bench", "--device", tmp_path, "--dry-run").one_line_error("is not a file")
    cli("eval", "bicubic", "-d", image).one_line_error("is a file, not a folder")
    pytest.importorskip("torch")
    run = tmp_path / "run"
    cli("train", "espcn", "--scale", "2", "--data", image, "--out", run, "--steps", "1").one_line_error(
        "is a file, not a folder"
    )
    assert not run.exists()


@pytest.mark.parametrize("version", ["1", 1.0, True, None])
def test_a_schema_version_of_another_type_is_named(cli: Any, tmp_path: Path, version: Any) -> None:
    from tests.test_report import ROWS, results_file

    path = results_file(tmp_path, ROWS)
    doc = json.loads(path.read_text())
    doc["schema_version"] = version
    path.write_text(json.dumps(doc))
    line = cli("report", path).one_line_error("not an integer")
    assert "reads version 1" not in line.replace("reads 1", "")


# --- a copied or moved run folder resumes -------------------------------------------------------


def test_a_moved_run_folder_resumes(cli: Any, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    data = _train_data(tmp_path / "data")
    first = _train(cli, data, tmp_path / "run", 2)
    assert first.code == 0, first.err
    shutil.move(tmp_path / "run", tmp_path / "moved")
    again = _train(cli, data, tmp_path / "moved", 3, "--resume")
    assert again.code == 0, again.err
    assert "to step 3" in again.err
    other = _train(cli, data, tmp_path / "moved", 4, "--resume", "--lr", "0.002")  # a real change still refuses
    other.one_line_error("options differ from the saved run: lr")


# --- the boundary itself -------------------------------------------------------------------------


def _patched_verb(monkeypatch: pytest.MonkeyPatch, body: Any) -> None:
    import sr_edge.cli

    monkeypatch.setattr(sr_edge.cli, "cmd_models", lambda args: body())


def test_an_unexpected_exception_keeps_its_traceback_and_asks_for_a_report(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patched_verb(monkeypatch, lambda: 1 / 0)
    ran = cli("models")
    assert ran.code == 1
    assert "Traceback" in ran.err and "ZeroDivisionError" in ran.err
    assert "bug in sr-edge" in ran.err.strip().splitlines()[-1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_mid_write_removes_the_temp_file_and_exits_with_its_code(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int
) -> None:
    from sr_edge.provenance import atomic_path

    target = tmp_path / "result.json"
    target.write_text("old")

    def body() -> int:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            # to the main thread, where a terminal's Ctrl-C lands: a process-directed signal may
            # go to a runtime's worker thread (ORT and OpenVINO pools outlive their sessions) and
            # reach Python only after the sleep, once the write has completed
            signal.pthread_kill(threading.main_thread().ident or 0, sig)
            time.sleep(1)
        return 0

    _patched_verb(monkeypatch, body)
    previous = signal.getsignal(signal.SIGTERM)
    # a terminal's process: Python's own SIGINT handler (an earlier test in the full suite leaves
    # another one installed; the CLI only takes SIGINT over from the default, boundary.py)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ran = cli("models")
    finally:
        signal.signal(signal.SIGINT, previous_int)
    assert ran.code == (143 if sig == signal.SIGTERM else 130)
    assert ran.err.strip() == ("sr-edge: terminated (SIGTERM); the output in progress was removed"
                               if sig == signal.SIGTERM else "sr-edge: interrupted")  # fmt: skip
    assert target.read_text() == "old" and temps_under(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is the CLI's only while it runs


@pytest.mark.parametrize(
    ("err", "needle"),
    [
        (errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system"),
        (errno.ELOOP, "symbolic links"), (errno.ENAMETOOLONG, "name too long"), (errno.EDQUOT, "quota"),
    ],
)  # fmt: skip
def test_expected_os_failures_are_one_line_naming_the_path(
    cli: Any, monkeypatch: pytest.MonkeyPatch, err: int, needle: str
) -> None:
    def body() -> int:
        raise OSError(err, os.strerror(err), "/data/out/x.png")

    _patched_verb(monkeypatch, body)
    cli("models").one_line_error("/data/out/x.png", needle)


def test_a_real_name_too_long_is_one_line(cli: Any, tmp_path: Path, image: Path) -> None:
    out = tmp_path / ("x" * 300 + ".png")
    line = cli("upscale", "bicubic", image, "--out", out).one_line_error("name too long")
    assert len(line) < 400  # the name is shortened on the line


def test_atomic_writes_name_the_target_not_the_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_edge.provenance import write_json

    target = tmp_path / "r.json"

    def full(self: Path, text: str, *a: Any, **k: Any) -> int:
        raise enospc()

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as info:
        write_json(target, {"a": 1})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_not_a_file_is_never_replaced(cli: Any, tmp_path: Path, image: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    cli("upscale", "bicubic", image, "--out", fifo, "--overwrite").one_line_error("not a regular file")
    assert fifo.is_fifo()
    from sr_edge.provenance import write_json

    with pytest.raises(SrEdgeError, match="not a regular file"):
        write_json(fifo, {})
    assert fifo.is_fifo() and temps_under(tmp_path) == []


def test_bench_overwrite_stopped_with_sigterm_keeps_the_old_file(tmp_path: Path) -> None:
    from tests.test_report import ROWS, results_file

    old = results_file(tmp_path, ROWS)
    before = old.read_bytes()
    args = [sys.executable, "-m", "sr_edge", *map(str, _quick_bench("--out", old, "--overwrite"))]
    args[args.index("--rounds") + 1] = "20"  # 20 rounds of at least 0.5 s: long enough to be stopped midway
    args.remove("--quick")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not list(tmp_path.glob(f".{old.name}.*.tmp/*")):
        time.sleep(0.01)
    time.sleep(0.5)  # rows are being measured into the hidden folder
    assert proc.poll() is None, "the run finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and f"{old} is unchanged" in err and "Traceback" not in err, err
    assert old.read_bytes() == before and temps_under(tmp_path) == []


def test_every_atomic_write_sweeps_what_a_killed_write_of_it_left(tmp_path: Path) -> None:
    from sr_edge.provenance import temp_beside, write_json

    target = tmp_path / "r.json"
    killed = [temp_beside(target), temp_beside(target, folder=True)]  # as kill -9 mid-write leaves them
    (killed[1] / "part").write_text("x")
    mine = [tmp_path / ".r.json.notes.tmp", tmp_path / ".r.json.a1b2c3d4.tmp.bak", tmp_path / ".other.a1b2c3d4.tmp"]
    for p in mine:  # not our pattern for this target: never touched
        p.write_text("user's")
    write_json(target, {"a": 1})
    assert not any(p.exists() for p in killed) and all(p.read_text() == "user's" for p in mine)
    img = tmp_path / "x.png"
    stale = temp_beside(img)
    write_image(img, np.zeros((2, 2, 3), np.uint8))
    assert not stale.exists()


def test_an_empty_output_path_is_refused_by_the_api_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_edge.bench import write_report
    from sr_edge.train.config import TrainConfig
    from tests.test_report import ROWS, results_file

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SrEdgeError, match="out is empty"):
        TrainConfig(model="espcn", scale=2, data=("T91",), out="")
    (tmp_path / "r").mkdir()
    results = results_file(tmp_path / "r", ROWS)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(SrEdgeError, match="report folder is empty"):
        write_report(results, "")
    assert sorted(tmp_path.iterdir()) == before
