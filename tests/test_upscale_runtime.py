"""The upscale runtime: exact tiling, folders that survive kill -9, video, --backend auto.

Float results are compared within a tolerance, never by bytes (another CPU may round a
convolution differently). Video tests skip where PyAV is not installed.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from sr_edge.bundle import find_bundles, graph_receptive_field, read_bundle
from sr_edge.data.io import PngBandWriter, read_image, write_image
from sr_edge.errors import SrEdgeError
from sr_edge.paths import bundles_dir
from sr_edge.runtime import split, tile_grid, upscale_tiled
from sr_edge.runtime.auto import OpenedModel, auto_tile, bench_choice, open_model
from sr_edge.runtime.pipeline import Prefetch
from sr_edge.upscale import Bicubic, NetworkUpscaler, upscale_image

SHIPPED = find_bundles(bundles_dir())
ROOT = Path(__file__).resolve().parents[1]


def image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """A float image in [0, 1] with edges, gradients and noise (what SR models see)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(x / 3.1 + y / 5.3)[..., None] * np.linspace(0.6, 1.0, c, dtype=np.float32)
    base[(x // 7 + y // 5).astype(int) % 2 == 0] *= 0.6
    return np.clip(base + 0.1 * rng.random((h, w, c), dtype=np.float32), 0, 1).astype(np.float32)


def cli(*args: object, timeout: float = 300, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sr_edge", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw
    )  # type: ignore[call-overload]


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def in_process(capsys: pytest.CaptureFixture[str], *args: object) -> subprocess.CompletedProcess[str]:
    """``sr-edge ARGS`` run by ``sr_edge.cli.main`` in this process (a usage error exits)."""
    from sr_edge.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), rc, out, err)


# --- receptive field -----------------------------------------------------------------------


def _conv_sum(path: Path) -> int:
    """The architecture's reach: each conv's padding-side reach summed (these graphs are chains)."""
    import onnx

    total = 0
    for node in onnx.load(str(path)).graph.node:
        if node.op_type == "Conv":
            a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
            k, pad = a["kernel_shape"][0], a["pads"][0]
            total += max(pad, k - 1 - pad)
    return total


@pytest.mark.parametrize("bundle", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_receptive_field_of_every_shipped_bundle(bundle: Path) -> None:
    b = read_bundle(bundle)
    field = b.receptive_field  # committed manifests lack it: read from the graph
    # an int8 bundle's TensorRT file pads explicitly (offset grids): count OpenVINO's, whose convs pad
    assert field == _conv_sum(b.onnx_for("openvino")) and 3 <= field <= 10


def _linear_graph(scale: int = 2) -> tuple[object, int]:
    """A random linear RGB x2 graph with a dilated conv, asymmetric pads and a ConvTranspose."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["lr", "w1"], ["a"], kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Conv", ["a", "w2"], ["b"], kernel_shape=[4, 4], pads=[1, 1, 2, 2]),
        helper.make_node("ConvTranspose", ["b", "w3"], ["sr"], kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [w("w1", 6, 3, 3, 3), w("w2", 5, 6, 4, 4), w("w3", 5, 3, 4, 4)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    field = graph_receptive_field(model)
    assert field is not None
    return model, field


def test_receptive_field_of_a_dilated_asymmetric_convtranspose_graph_is_its_impulse_response() -> None:
    import onnxruntime as ort

    model, field = _linear_graph()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    lr = np.zeros((1, 3, 41, 41), np.float32)
    c = 20
    lr[0, :, c, c] = 1.0  # linear graph: the outputs that move are exactly those that read pixel c
    sr = session.run(None, {"lr": lr})[0]
    ys, xs = np.nonzero(np.abs(sr[0]).sum(axis=0) > 1e-9)
    measured = max(np.abs(ys // 2 - c).max(), np.abs(xs // 2 - c).max())
    assert field == measured == 5  # 2 (dilated 3x3) + 2 (4x4, pads 1 and 2) + 1 (the deconv's odd phase)


# --- tiling ---------------------------------------------------------------------------------


def test_split_covers_in_near_equal_pieces() -> None:
    assert split(10, 0) == [(0, 10)] and split(10, 10) == [(0, 10)]
    parts = split(37, 13)
    assert parts[0][0] == 0 and parts[-1][1] == 37 and len(parts) == 3
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert max(b - a for a, b in parts) <= 13 and max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1
    grid = tile_grid(20, 30, 8, 3)
    assert grid[0][0].top == 0 and grid[0][1].left == grid[0][1].x0 - 3 and grid[-1][-1].right == 30


@pytest.fixture(scope="module")
def sessions() -> dict[Path, object]:
    from sr_edge.backends import load_bundle

    opened = {b: load_bundle(b, "ort", threads=1) for b in SHIPPED}
    yield opened
    for s in opened.values():
        s.close()  # type: ignore[attr-defined]


def _upscaler(session: object) -> NetworkUpscaler:
    up = session.upscaler(workers=1)  # type: ignore[attr-defined]
    up.receptive_field = session.bundle.receptive_field  # type: ignore[attr-defined]
    return up


@pytest.mark.parametrize("bundle", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tiled_equals_whole_image_for_every_shipped_bundle(bundle: Path, sessions: dict[Path, object]) -> None:
    up = _upscaler(sessions[bundle])
    for c, (h, w), tile in ((3, (37, 45), 13), (1, (29, 40), 11), (4, (31, 27), 17)):  # RGB, grey, RGBA
        img = image(h, w, c, seed=c)
        whole = upscale_image(up, img)
        tiled = upscale_tiled(up, img, tile)
        assert tiled.shape == whole.shape == (h * up.scale, w * up.scale, c)
        assert np.abs(tiled - whole).max() < 1e-5, (c, tile)
        for dtype, peak in ((np.uint8, 255), (np.uint16, 65535)):  # files: rounding may flip a rare LSB
            ints = np.round(img * peak).astype(dtype)
            a = upscale_image(up, ints).astype(np.int64)
            b = upscale_tiled(up, ints, tile).astype(np.int64)
            assert b.dtype == a.dtype and np.abs(a - b).max() <= 1 and np.mean(a != b) < 0.005, (c, dtype)


def test_an_overlap_below_the_receptive_field_shows_seams(sessions: dict[Path, object]) -> None:
    """The check above can fail: two pixels short of the field, the tiles do not stitch."""
    bundle = next(b for b in SHIPPED if b.parent.name == "espcn")
    up = _upscaler(sessions[bundle])
    img = image(37, 45, 3)
    assert np.abs(upscale_tiled(up, img, 13, overlap=up.receptive_field - 2) - upscale_image(up, img)).max() > 1e-3


def test_tiled_equals_whole_for_an_rgb_network_with_convtranspose() -> None:
    import onnxruntime as ort

    model, field = _linear_graph()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    up = NetworkUpscaler("linear", 2, "rgb", lambda x: session.run(None, {"lr": x})[0], 1, field)
    for c in (3, 1, 4):
        img = image(33, 26, c)
        assert np.abs(upscale_tiled(up, img, 9) - upscale_image(up, img)).max() < 1e-5


def test_bicubic_tiles_exactly_at_every_scale() -> None:
    for scale in (2, 3, 4):
        bic = Bicubic(scale)
        img = image(23, 31, 4)
        assert np.abs(upscale_tiled(bic, img, 8) - upscale_image(bic, img)).max() < 1e-6
        ints = np.round(img * 65535).astype(np.uint16)
        assert np.array_equal(upscale_tiled(bic, ints, 9), upscale_image(bic, ints))


def test_unknown_receptive_field_refuses_to_tile() -> None:
    up = NetworkUpscaler("opaque", 2, "rgb", lambda x: np.repeat(np.repeat(x, 2, 2), 2, 3))
    with pytest.raises(SrEdgeError, match="receptive field is unknown"):
        upscale_tiled(up, image(20, 20, 3), 8)
    assert upscale_tiled(up, image(20, 20, 3), 0).shape == (40, 40, 3)


def test_auto_tile_follows_the_budget_and_the_session_bounds() -> None:
    model = OpenedModel(Bicubic(2), 2, "bicubic", bytes_per_pixel=1000.0)
    assert auto_tile(300, 400, 3, 1, model, 4, budget_mb=2048) == 0  # fits whole
    small = auto_tile(8000, 8000, 3, 1, model, 4, budget_mb=1024)
    large = auto_tile(8000, 8000, 3, 1, model, 4, budget_mb=4096)
    assert 64 <= small < large < 8000 and small % 8 == 0
    model.max_window = (256, 512)
    assert auto_tile(8000, 8000, 3, 1, model, 4, budget_mb=4096) <= 256 - 8


# --- PNG written in bands ------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_band_writer_round_trips(tmp_path: Path, channels: int, dtype: type) -> None:
    from PIL import Image

    peak = np.iinfo(dtype).max
    img = (image(37, 29, channels) * peak).astype(dtype)
    path = tmp_path / "x.png"
    with open(path, "wb") as f:
        writer = PngBandWriter(f, 29, 37, channels, np.dtype(dtype))
        for r in range(0, 37, 5):
            writer.write(img[r : r + 5])
        writer.close()
    back = read_image(path)
    assert back.dtype == dtype and np.array_equal(back, img)
    with Image.open(path) as im:
        im.load()  # Pillow decodes it too (another decoder than read_image's for 16-bit)


# --- pipeline ------------------------------------------------------------------------------


def test_prefetch_overlaps_and_raises_the_stage_error() -> None:
    def slow(n: int) -> object:
        for i in range(n):
            time.sleep(0.05)
            yield i

    started = time.perf_counter()
    a = Prefetch(slow(6), depth=2)
    b = Prefetch((time.sleep(0.05) or i for i in a), depth=2)  # type: ignore[func-returns-value]
    assert list(b) == list(range(6))
    assert time.perf_counter() - started < 0.55  # 0.6 s of work in two stages that overlap

    def broken() -> object:
        yield 1
        raise ValueError("stage failed")

    with Prefetch(broken()) as p, pytest.raises(ValueError, match="stage failed"):
        list(p)


# --- folders -------------------------------------------------------------------------------


def _mixed_folder(root: Path) -> dict[str, tuple[int, ...]]:
    """RGB, grey, RGBA, 16-bit PNG, JPEG, a corrupt PNG, a text file; and a subfolder."""
    root.mkdir()
    (root / "sub").mkdir()
    rgb = (image(20, 24, 3) * 255).astype(np.uint8)
    write_image(root / "rgb.png", rgb)
    write_image(root / "grey.png", (image(18, 22, 1) * 255).astype(np.uint8))
    write_image(root / "rgba.png", (image(16, 20, 4) * 255).astype(np.uint8))
    write_image(root / "deep.png", (image(14, 18, 3) * 65535).astype(np.uint16))
    write_image(root / "photo.jpg", rgb)
    write_image(root / "sub" / "inner.png", rgb)
    good = (root / "rgb.png").read_bytes()
    (root / "broken.png").write_bytes(good[: len(good) // 2])
    (root / "notes.txt").write_text("not an image\n")
    return {"rgb.png": (40, 48, 3), "grey.png": (36, 44, 1), "rgba.png": (32, 40, 4), "deep.png": (28, 36, 3),
            "photo.jpg": (40, 48, 3), "sub/inner.png": (40, 48, 3)}  # fmt: skip


def test_folder_of_mixed_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = _mixed_folder(tmp_path / "in")
    out = tmp_path / "out"
    proc = cli("upscale", "bicubic", tmp_path / "in", "--out", out, "--recursive")
    assert proc.returncode == 1, proc.stderr  # the corrupt file: reported, skipped, non-zero at the end
    assert "broken.png" in proc.stderr and "1 failed" in proc.stderr and "notes.txt" in proc.stderr
    assert "6 written" in proc.stderr
    for rel, shape in expected.items():
        got = read_image(out / rel)
        assert got.shape == shape, rel
    assert read_image(out / "deep.png").dtype == np.uint16
    assert not (out / "broken.png").exists() and not (out / "notes.txt").exists()
    again = in_process(capsys, "upscale", "bicubic", tmp_path / "in", "--out", out, "--recursive")
    assert again.returncode == 1 and "0 written, 6 skipped" in again.stderr, again.stderr
    flat = in_process(capsys, "upscale", "bicubic", tmp_path / "in", "--out", tmp_path / "flat")  # no --recursive
    assert "1 subfolder(s)" in flat.stderr and not (tmp_path / "flat" / "sub").exists()


def _many_images(root: Path, n: int, side: int) -> None:
    root.mkdir()
    for i in range(n):
        write_image(root / f"img{i:03d}.png", (image(side, side, 3, seed=i) * 255).astype(np.uint8))


def _interrupt(tmp_path: Path, sig: int) -> tuple[subprocess.CompletedProcess[str] | None, Path, int]:
    src, out = tmp_path / "in", tmp_path / "out"
    n = 24
    _many_images(src, n, 128)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sr_edge", "upscale", "bicubic", str(src), "--out", str(out), "--scale", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and len(list(out.glob("img*.png"))) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out, n


def _all_complete(out: Path) -> int:
    done = sorted(out.glob("img*.png"))
    for f in done:
        assert read_image(f).shape == (384, 384, 3), f  # decodes fully: no half-written file
    return len(done)


def test_folder_run_killed_with_sigkill_resumes(tmp_path: Path) -> None:
    _, out, n = _interrupt(tmp_path, signal.SIGKILL)
    done = _all_complete(out)
    assert 3 <= done < n
    again = cli("upscale", "bicubic", tmp_path / "in", "--out", out, "--scale", "3")
    assert again.returncode == 0, again.stderr
    assert f"{n - done} written, {done} skipped" in again.stderr, again.stderr
    assert _all_complete(out) == n and not list(out.glob(".*.tmp"))  # stale temp files swept


def test_folder_run_stopped_with_sigterm_exits_143_cleanly(tmp_path: Path) -> None:
    proc, out, n = _interrupt(tmp_path, signal.SIGTERM)
    assert proc is not None and proc.returncode == 143, proc.stderr
    assert "terminated" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(out.glob(".*.tmp"))
    assert 3 <= _all_complete(out) < n


# --- errors --------------------------------------------------------------------------------


def test_refusals_are_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_image(tmp_path / "a.png", (image(12, 12, 3) * 255).astype(np.uint8))
    x3 = bundles_dir() / "espcn" / "x3"
    before = sorted(tmp_path.iterdir())
    run = lambda *a: in_process(capsys, "upscale", *a)  # noqa: E731
    one_line_error(run("bicubic", src, "--out", tmp_path / "missing" / "b.png"), "does not exist")
    one_line_error(run("bicubic", src, "--out", src, "--overwrite"), "overwrite the input")
    one_line_error(run("bicubic", src, "--out", tmp_path / "b.png", "--tile", "big"), "--tile")
    one_line_error(run(x3, src, "--out", tmp_path / "b.png", "--scale", "2"), "x3, not x2")
    one_line_error(run("bicubic", tmp_path, "--out", tmp_path), "input folder")
    assert sorted(tmp_path.iterdir()) == before
    # the same through a real process: the first line a user sees is the whole message
    one_line_error(cli("upscale", x3, src, "--out", tmp_path / "b.png", "--scale", "2"), "x3, not x2")


# --- backend auto --------------------------------------------------------------------------


def _results_file(path: Path, bundle: Path, cpu: str, fastest: str) -> Path:
    from sr_edge.bench.results import SCHEMA, SCHEMA_VERSION

    b = read_bundle(bundle)
    rows = []
    for backend, precision, ms in (("ort", "fp32", 50.0), ("openvino", "fp32", 60.0), ("openvino", "bf16", 40.0)):
        ms = 10.0 if f"{backend}/{precision}" == fastest else ms
        stats = {"runs": 3, "warmup": 1, "total_s": 1.0, "p50_ms": ms, "p90_ms": ms, "p99_ms": ms, "mean_ms": ms,
                 "stdev_ms": 0.0, "min_ms": ms, "max_ms": ms, "fps": 1000 / ms}  # fmt: skip
        rows.append({
            "id": f"{b.model}/x{b.scale}@{backend}/{precision}", "variant": f"{b.model}/x{b.scale}", "model": b.model,
            "scale": b.scale, "backend": backend, "precision": precision, "peer": None, "status": "ok",
            "bundle": {"path": str(bundle), "precision": b.precision, "onnx_sha256": b.onnx_sha256},
            "latency": {"640x360": {"frame": stats, "model": None}},
        })  # fmt: skip
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "machine": {"cpu": cpu}, "device": {"name": "ci-cpu"},
           "settings": {}, "rows": rows}  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def test_backend_auto_reads_bench_results_of_this_cpu_only(tmp_path: Path) -> None:
    from sr_edge.devices import load_profile
    from sr_edge.provenance import cpu_model

    bundle = bundles_dir() / "espcn" / "x2"
    profile = load_profile("ci-cpu")
    here = _results_file(tmp_path / "here.json", bundle, cpu_model(), fastest="ort/fp32")
    choice, skipped = bench_choice(read_bundle(bundle), profile, [here], "cpu", None)
    assert choice is not None and (choice.backend, choice.precision) == ("ort", "fp32") and not skipped
    assert "10.0 ms per 640x360 frame" in choice.reason
    elsewhere = _results_file(tmp_path / "there.json", bundle, "Some Other CPU", fastest="ort/fp32")
    choice, skipped = bench_choice(read_bundle(bundle), profile, [elsewhere], "cpu", None)
    assert choice is None and "Some Other CPU" in skipped[0]
    model = open_model(bundle, None, "auto", profile=profile, results=[here])
    try:
        assert model.note is not None and model.note.startswith("backend auto: ort/fp32 (fastest in")
        assert model.scale == 2 and model.upscaler.receptive_field == 4
    finally:
        model.close()
    model = open_model(bundle, None, "auto", profile=profile, results=[elsewhere])  # falls back to the profile
    try:
        assert model.note is not None and "device profile ci-cpu" in model.note
    finally:
        model.close()


# --- video ---------------------------------------------------------------------------------


def _make_clip(path: Path, frames: int = 12, size: tuple[int, int] = (64, 48), audio: str | None = "aac",
               rotation: int = 0, rate: int = 25) -> None:  # fmt: skip
    """A short clip made with PyAV's FFmpeg: moving bars, and a 440 Hz sine as its audio."""
    av = pytest.importorskip("av")
    w, h = size
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = out.add_stream(audio, rate=44100)
            a.layout = "mono"
        for i in range(frames):
            img = (image(h, w, 3, seed=i) * 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.roll(img, 2 * i, axis=1), format="rgb24")
            frame.pts = i
            for p in v.encode(frame):
                out.mux(p)
        if a is not None:
            n = 44100 * frames // rate
            fmt = a.codec_context.format.name
            t = np.arange(n) / 44100
            wave = 0.3 * np.sin(2 * np.pi * 440 * t)
            samples = (wave * 127 + 128).astype(np.uint8) if fmt.startswith("u8") else wave.astype(np.float32)
            af = av.AudioFrame.from_ndarray(samples[None], format=fmt, layout="mono")
            af.sample_rate, af.pts = 44100, 0
            for p in a.encode(af):
                out.mux(p)
            for p in a.encode():
                out.mux(p)
        for p in v.encode():
            out.mux(p)


def _streams(path: Path) -> dict[str, object]:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        info: dict[str, object] = {
            "frames": len(frames), "rate": v.average_rate, "size": (v.width, v.height),
            "rotation": frames[0].rotation,
            "audio": [(a.codec_context.name, a.codec_context.sample_rate) for a in c.streams.audio],
            "audio_s": [float(a.duration * a.time_base) if a.duration else None for a in c.streams.audio],
            "luma": float(np.mean([f.to_ndarray(format="gray").mean() for f in frames])),
        }  # fmt: skip
    with av.open(str(path)) as c:
        info["audio_packets"] = sum(1 for p in c.demux(c.streams.audio) if p.size) if c.streams.audio else 0
    return info


def test_video_keeps_frames_rate_audio_and_rotation(tmp_path: Path) -> None:
    pytest.importorskip("av")
    clip, out = tmp_path / "clip.mp4", tmp_path / "clip_x2.mp4"
    _make_clip(clip, rotation=90)
    proc = cli("upscale", bundles_dir() / "espcn" / "x2", clip, "--out", out, "--backend", "ort")
    assert proc.returncode == 0, proc.stderr
    assert "copied aac" in proc.stderr and "12 frames" in proc.stderr
    src, got = _streams(clip), _streams(out)
    assert got["frames"] == src["frames"] == 12 and got["rate"] == src["rate"] == 25
    assert got["size"] == (128, 96) and got["rotation"] == src["rotation"] == 90
    assert got["audio"] == src["audio"] and got["audio_packets"] == src["audio_packets"]  # copied packet by packet
    assert abs(float(got["luma"]) - float(src["luma"])) < 3  # same picture, same colour range
    assert not list(tmp_path.glob(".*.tmp"))


def test_video_audio_the_container_cannot_hold_is_transcoded(tmp_path: Path) -> None:
    pytest.importorskip("av")
    clip, out = tmp_path / "clip.mkv", tmp_path / "clip_x2.mp4"
    _make_clip(clip, frames=8, audio="pcm_u8")  # unsigned 8-bit PCM: Matroska holds it, MP4 does not
    proc = cli("upscale", "bicubic", clip, "--out", out, "--crf", "30")
    assert proc.returncode == 0, proc.stderr
    assert "transcoded pcm_u8 to aac" in proc.stderr
    got = _streams(out)
    assert got["frames"] == 8 and got["audio"][0][0] == "aac"  # type: ignore[index]
    assert abs(float(got["audio_s"][0]) - 8 / 25) < 0.1  # type: ignore[index,arg-type]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_interrupted_video_leaves_no_partial_output(tmp_path: Path, sig: int) -> None:
    pytest.importorskip("av")
    clip, out = tmp_path / "clip.mp4", tmp_path / "clip_x4.mp4"
    _make_clip(clip, frames=100, size=(96, 64), audio=None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sr_edge", "upscale", "bicubic", str(clip), "--out", str(out), "--scale", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not list(tmp_path.glob(".clip_x4.mp4.*.tmp")):
        time.sleep(0.01)
    time.sleep(0.3)  # frames are being written into the temp file
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert not out.exists()  # never a half-written video under the output's name
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "partial file was removed" in stderr, stderr
        assert not list(tmp_path.glob(".*.tmp"))
    else:  # kill -9 leaves its temp file; the next run removes it and writes the whole video
        again = cli("upscale", "bicubic", clip, "--out", out, "--scale", "4", timeout=120)
        assert again.returncode == 0 and "interrupted run" in again.stderr, again.stderr
        assert _streams(out)["frames"] == 100 and not list(tmp_path.glob(".*.tmp"))


def test_video_refusals_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    av = pytest.importorskip("av")
    sound = tmp_path / "sound.mp4"
    with av.open(str(sound), "w") as c:  # audio only
        a = c.add_stream("aac", rate=44100)
        a.layout = "mono"
        af = av.AudioFrame.from_ndarray(np.zeros((1, 4410), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 44100, 0
        for p in [*a.encode(af), *a.encode()]:
            c.mux(p)
    run = lambda *a: in_process(capsys, "upscale", "bicubic", *a)  # noqa: E731
    before = sorted(tmp_path.iterdir())
    one_line_error(run(sound, "--out", tmp_path / "x.mp4"), "no video stream")
    clip = tmp_path / "clip.mp4"
    _make_clip(clip, frames=2, audio=None)
    before = sorted(tmp_path.iterdir())
    one_line_error(run(clip, "--out", clip, "--overwrite"), "overwrite the input")
    one_line_error(run(clip, "--out", tmp_path / "no" / "x.mp4"), "does not exist")
    one_line_error(run(clip, "--out", tmp_path / "x.webm", "--codec", "libx264"), "cannot hold")
    one_line_error(run(clip, "--out", tmp_path / "x.mp4", "--codec", "mpeg4", "--crf", "20"), "constant rate")
    assert sorted(tmp_path.iterdir()) == before


def test_missing_pyav_names_the_video_extra(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["av"] = None  # as if PyAV were not installed
        from sr_edge.runtime.video import import_av
        try:
            import_av()
        except Exception as e:
            print(e)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "pip install 'sr-edge[video]'" in proc.stdout, proc.stdout + proc.stderr


# --- no torch ------------------------------------------------------------------------------


def test_image_folder_and_video_runs_import_no_torch(tmp_path: Path) -> None:
    import importlib.util

    folder = tmp_path / "in"
    _many_images(folder, 2, 24)
    clip = tmp_path / "clip.mp4"
    has_av = importlib.util.find_spec("av") is not None
    if has_av:  # without PyAV the image and folder runs are still checked
        _make_clip(clip, frames=3)
    bundle = bundles_dir() / "fsrcnn" / "x2"
    script = textwrap.dedent(
        f"""
        import sys
        from sr_edge.cli import main
        assert main(["upscale", {str(bundle)!r}, {str(folder / "img000.png")!r}, "-o", {str(tmp_path / "one.png")!r},
                     "--tile", "9"]) == 0
        assert main(["upscale", "fsrcnn", {str(folder)!r}, "-o", {str(tmp_path / "out")!r}]) == 0
        if {has_av!r}:
            assert main(["upscale", "fsrcnn", {str(clip)!r}, "-o", {str(tmp_path / "clip_x2.mp4")!r}]) == 0
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not leaked, leaked[:5]
        print("NO-TORCH-OK")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and "NO-TORCH-OK" in proc.stdout, proc.stderr[-3000:]
    assert read_image(tmp_path / "one.png").shape == (48, 48, 3) and len(list((tmp_path / "out").iterdir())) == 2
    assert not has_av or (tmp_path / "clip_x2.mp4").is_file()


def test_tiled_upscale_of_a_larger_image_streams_its_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 320 x 250 image at x2 in 64 px tiles through the CLI: the PNG written band by band."""
    src = write_image(tmp_path / "big.png", (image(250, 320, 3) * 255).astype(np.uint8))
    bundle = bundles_dir() / "ecbsr-m4c16" / "x2"
    tiled = in_process(capsys, "upscale", bundle, src, "--out", tmp_path / "tiled.png", "--tile", "64", "-b", "ort")
    assert tiled.returncode == 0 and "20 tiles of up to 64 px (--tile), overlap 6 px" in tiled.stderr, tiled.stderr
    whole = in_process(capsys, "upscale", bundle, src, "--out", tmp_path / "whole.png", "--tile", "0", "-b", "ort")
    assert whole.returncode == 0 and "tiles" not in whole.stderr, whole.stderr
    a, b = read_image(tmp_path / "tiled.png").astype(int), read_image(tmp_path / "whole.png").astype(int)
    assert a.shape == (500, 640, 3) and np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3
