"""The backend conformance suite: every available backend x every light registered model.

Bundles are exported once per session from random-weight checkpoints of every light
model (shipped weights exist for only some; tests/test_shipped.py runs the committed
bundles), so the torch backend can rebuild each parent model. Each backend
must reproduce the torch reference on a real photo crop at >= 50 dB in fp32, and any
backend's Set5 PSNR must sit within 0.01 dB of torch. Failures of every kind (tampered
bundle, newer format, missing runtime, wrong input) must be one-line errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_edge.backends import (
    BACKENDS,
    OpenVinoOptions,
    ShapeRange,
    available_backends,
    get_backend,
    load_bundle,
    load_upscaler,
    parse_shape,
)
from sr_edge.checkpoint import save_checkpoint
from sr_edge.data.color import rgb_to_ycbcr
from sr_edge.errors import MissingDependencyError, SrEdgeError
from sr_edge.export import export_bundle
from sr_edge.models import create_model, list_models, model_card

HEAVY = {"rrdbnet", "edsr-baseline"}  # covered by tests/test_export.py; too slow for the full matrix
LIGHT = [m for m in list_models() if m not in HEAVY]
BACKEND_PARAMS = [
    pytest.param("ort"),
    pytest.param("openvino"),
    pytest.param("torch"),
    pytest.param("tensorrt", marks=pytest.mark.tensorrt),
]


def _require(backend: str) -> None:
    if backend not in available_backends():
        extra = get_backend(backend).extra
        pytest.skip(f"backend {backend} is not available here (pip install 'sr-edge[{extra}]' and its device)")


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """name -> (checkpoint, bundle) for every light model, x2, random weights. The legacy
    exporter: 5 s for all of them against 39 s with dynamo (AMD EPYC Zen 3); the default
    exporter's graphs are checked model by model in tests/test_export.py."""
    root = tmp_path_factory.mktemp("bundles")
    out: dict[str, tuple[Path, Path]] = {}
    for i, name in enumerate(LIGHT):
        torch.manual_seed(i)
        model = create_model(name, 2)
        ckpt = save_checkpoint(root / f"{name}.safetensors", name, 2, model.state_dict())
        out[name] = (ckpt, export_bundle(ckpt, root / name, measure=False, exporter="legacy"))
    return out


def _reference(ckpt: Path, x: np.ndarray) -> np.ndarray:
    from sr_edge.models import model_from_checkpoint

    model, _ = model_from_checkpoint(ckpt)
    with torch.no_grad():
        return model.deploy().eval()(torch.from_numpy(x)).numpy()


def _crop(photo: np.ndarray, name: str) -> np.ndarray:
    """The photo as the model's input: NCHW float32 in [0, 1] (Y for 'y' models)."""
    rgb = photo.astype(np.float32) / 255.0
    planes = rgb_to_ycbcr(rgb)[..., :1] if model_card(name).color_mode == "y" else rgb
    return np.ascontiguousarray(planes.transpose(2, 0, 1)[None], dtype=np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("name", LIGHT)
def test_conformance_fp32_matches_torch_on_a_real_photo(
    backend: str, name: str, bundles: dict[str, tuple[Path, Path]], photo: np.ndarray
) -> None:
    _require(backend)
    ckpt, bundle = bundles[name]
    x = _crop(photo, name)
    ref = _reference(ckpt, x)
    with load_bundle(bundle, backend) as session:
        assert session.precision == "fp32" and session.backend == backend
        assert session.input_spec.channels == model_card(name).channels and session.input_spec.scale == 2
        assert session.build_seconds >= 0 and session.device
        y = session.run(x)
        assert y.dtype == np.float32 and y.shape == ref.shape == (1, x.shape[1], 2 * x.shape[2], 2 * x.shape[3])
        assert _psnr(y, ref) >= 50.0, f"{backend} vs torch: {_psnr(y, ref):.1f} dB"
        two = session.run(np.concatenate([x, x[..., ::-1].copy()]))  # batch of 2, second flipped
        assert two.shape[0] == 2 and _psnr(two[:1], y) >= 50.0
    with pytest.raises(SrEdgeError, match="closed"):
        session.run(x)


def test_set5_psnr_within_0_01_db_of_torch(bundles: dict[str, tuple[Path, Path]], shared_datasets: Path) -> None:
    from sr_edge.data.datasets import resolve_dataset
    from sr_edge.evaluate import evaluate

    dataset = resolve_dataset("Set5", shared_datasets / "eval")
    _, bundle = bundles["ecbsr-m4c16"]
    scores = {b: evaluate(load_upscaler(bundle, b), dataset).psnr_y for b in ("torch", *available_backends())}
    assert all(abs(psnr - scores["torch"]) <= 0.01 for psnr in scores.values()), scores


def test_upscaler_from_a_bundle_matches_the_checkpoint_upscaler(
    bundles: dict[str, tuple[Path, Path]], photo: np.ndarray
) -> None:
    from sr_edge.resolve import create_upscaler

    for name in ("espcn", "srvggnet-compact"):  # one Y model, one RGB model
        ckpt, bundle = bundles[name]
        via_bundle = create_upscaler(str(bundle), 2, backend="openvino")(photo)
        via_torch = create_upscaler(str(ckpt), 2)(photo)
        assert via_bundle.shape == via_torch.shape == (192, 240, 3) and via_bundle.dtype == np.uint8
        assert np.abs(via_bundle.astype(int) - via_torch.astype(int)).max() <= 1


def test_options_reach_the_runtimes(bundles: dict[str, tuple[Path, Path]], photo: np.ndarray) -> None:
    _, bundle = bundles["fsrcnn"]
    x = _crop(photo, "fsrcnn")
    with load_bundle(bundle, "ort") as base, load_bundle(bundle, "ort", threads=1, graph_optimization="disable") as raw:
        assert _psnr(raw.run(x), base.run(x)) >= 50.0
    with load_bundle(bundle, "openvino", threads=1) as ov:
        # the explicit f32 hint: this CPU would otherwise run bf16 silently
        assert "32" in ov.execution_precision  # type: ignore[attr-defined]
    with load_bundle(bundle, "openvino", static_shape=(1, 96, 120)) as ov:
        assert ov.run(x).shape == (1, 1, 192, 240)
        with pytest.raises(SrEdgeError, match="outside the built range"):
            ov.run(x[..., :64])


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_tampered_bundle_is_refused(bundles: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "tampered"
    shutil.copytree(bundles["espcn"][1], bad)
    data = bytearray((bad / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (bad / "model.onnx").write_bytes(bytes(data))
    for backend in ("ort", "openvino"):
        with pytest.raises(SrEdgeError) as err:
            load_bundle(bad, backend)
        assert "does not match the manifest" in _one_line(err)
    (bad / "model.onnx").unlink()
    with pytest.raises(SrEdgeError, match="missing"):
        load_bundle(bad)


def test_newer_format_version_is_refused(bundles: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    import shutil

    newer = tmp_path / "newer"
    shutil.copytree(bundles["espcn"][1], newer)
    doc = json.loads((newer / "manifest.json").read_text())
    doc["format_version"] = 99
    (newer / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(SrEdgeError) as err:
        load_bundle(newer)
    assert "format 99 is newer" in _one_line(err) and "upgrade sr-edge" in str(err.value)
    with pytest.raises(SrEdgeError, match="not a bundle"):
        load_bundle(tmp_path)


def test_missing_openvino_names_the_extra(
    bundles: dict[str, tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    assert not BACKENDS["openvino"].available()
    with pytest.raises(MissingDependencyError) as err:
        load_bundle(bundles["espcn"][1], "openvino")
    assert "pip install 'sr-edge[openvino]'" in _one_line(err)


def test_tensorrt_without_the_library_names_the_extra(bundles: dict[str, tuple[Path, Path]]) -> None:
    if "tensorrt" in available_backends():
        pytest.skip("TensorRT is installed here")
    with pytest.raises(MissingDependencyError) as err:
        load_bundle(bundles["espcn"][1], "tensorrt")
    assert "pip install 'sr-edge[tensorrt]'" in _one_line(err)


@pytest.mark.parametrize("name", LIGHT)
def test_torch_channels_last_is_the_same_model(
    name: str, bundles: dict[str, tuple[Path, Path]], photo: np.ndarray
) -> None:
    """The reference runs NHWC by default (oneDNN's fast layout); NCHW gives the same output."""
    x = _crop(photo, name)
    bundle = bundles[name][1]
    with load_bundle(bundle, "torch") as fast, load_bundle(bundle, "torch", channels_last=False) as plain:
        assert fast.memory_format == "channels_last" and plain.memory_format == "contiguous"
        a, b = fast.run(x), plain.run(x)
    assert a.flags.c_contiguous and a.shape == b.shape
    assert np.abs(a - b).max() < 1e-5


@pytest.mark.parametrize("backend", ["ort", "openvino", "torch"])
def test_wrong_input_is_a_one_line_error(backend: str, bundles: dict[str, tuple[Path, Path]]) -> None:
    _require(backend)
    good = np.zeros((1, 1, 8, 8), np.float32)
    with load_bundle(bundles["espcn"][1], backend) as session:
        for bad, needle in [
            (good.astype(np.float64), "dtype is float64, expected float32"),
            (good.astype(np.uint8), "dtype is uint8"),
            (good[0], "not 4-D"),
            (np.zeros((1, 3, 8, 8), np.float32), "has 3 channels, expected 1"),
            (np.zeros((1, 1, 0, 8), np.float32), "empty dimension"),
            ([[0.0]], "numpy array"),
        ]:
            with pytest.raises(SrEdgeError) as err:
                session.run(bad)
            assert needle in _one_line(err)


def test_bad_requests_are_one_line_errors(bundles: dict[str, tuple[Path, Path]]) -> None:
    bundle = bundles["espcn"][1]
    cases = [
        (lambda: load_bundle(bundle, "onnx"), "unknown backend 'onnx'"),
        (lambda: load_bundle(bundle, "ort", thread=2), "unknown option(s) thread for backend ort"),
        (lambda: load_bundle(bundle, "ort", precision="fp8"), "precision must be one of"),
        (lambda: load_bundle(bundle, "ort", precision="int8"), "needs an int8 (QDQ) bundle"),
        (lambda: load_bundle(bundle, "ort", precision="fp16"), "fp16 only through its TensorRT provider"),
        (lambda: load_bundle(bundle, "ort", device="tpu"), "ort device must be"),
        (lambda: load_bundle(bundle, "ort", device="cuda"), "CUDA execution provider"),
        (lambda: load_bundle(bundle, "openvino", device="npu"), "not available here"),
        (lambda: load_bundle(bundle, "openvino", threads=0), "positive integer"),
        (lambda: OpenVinoOptions(static_shape=(1, 8)), "(batch, height, width)"),  # type: ignore[arg-type]
        (lambda: ShapeRange((1, 64, 64), (1, 32, 32), (1, 128, 128)), "min <= opt <= max"),
        (lambda: parse_shape("big"), "360x640"),
    ]
    for call, needle in cases:
        with pytest.raises(SrEdgeError) as err:
            call()
        assert needle in _one_line(err), (needle, str(err.value))
    assert parse_shape("360x640") == (1, 360, 640) and parse_shape("2x8x16") == (2, 8, 16)


def test_cli_errors_are_one_line(bundles: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    bundle = bundles["espcn"][1]
    for args, needle in [
        (["eval", str(bundle), "--backend", "tensorrt"], "tensorrt"),
        (["eval", str(bundle), "--backend", "nope"], "unknown backend"),
        (["eval", "ecbsr-m4c8", "--backend", "openvino"], "has no shipped bundle"),
        (["eval", str(tmp_path), "--backend", "ort"], "not a bundle"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "sr_edge", *args], capture_output=True, text=True, timeout=300)
        if needle == "tensorrt" and "tensorrt" in available_backends():
            continue
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_deployment_never_imports_torch(bundles: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """Loading and running bundles on ort/openvino, upscaling and eval through the CLI: no torch."""
    from sr_edge.data import write_image

    _, y_bundle = bundles["espcn"]
    _, rgb_bundle = bundles["srvggnet-compact"]
    image = tmp_path / "in.png"
    write_image(image, (np.random.default_rng(0).random((24, 20, 3)) * 255).astype(np.uint8))
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from sr_edge.backends import load_bundle, load_upscaler
        from sr_edge.backends.trt_check import check_tensorrt
        from sr_edge.resolve import create_upscaler
        from sr_edge.cli import main
        for backend in ("ort", "openvino"):
            with load_bundle({str(y_bundle)!r}, backend) as s:
                assert s.run(np.zeros((1, 1, 8, 8), np.float32)).shape == (1, 1, 16, 16)
            load_upscaler({str(rgb_bundle)!r}, backend)(np.zeros((8, 8, 3), np.uint8))
        create_upscaler({str(y_bundle)!r}, 2)(np.zeros((8, 8, 3), np.uint8))
        assert check_tensorrt({str(y_bundle)!r}).ok
        assert main(["upscale", {str(y_bundle)!r}, {str(image)!r}, "-o", {str(tmp_path / "out.png")!r}]) == 0
        assert main(["eval", {str(rgb_bundle)!r}, "--backend", "openvino", "--json"]) == 0
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not leaked, leaked[:5]
        print("NO-TORCH-OK")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "NO-TORCH-OK" in proc.stdout, proc.stderr[-2000:]


def test_torch_backend_needs_the_parent_weights(bundles: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    ckpt, bundle = bundles["espcn"]
    moved = tmp_path / "moved.safetensors"
    moved.write_bytes(ckpt.read_bytes())
    with load_bundle(bundle, "torch", checkpoint=str(moved)) as session:
        assert session.run(np.zeros((1, 1, 8, 8), np.float32)).shape == (1, 1, 16, 16)
    other = bundles["fsrcnn"][0]
    with pytest.raises(SrEdgeError, match="does not match"):
        load_bundle(bundle, "torch", checkpoint=str(other))


def test_typecheck_canary_rejects_tensorrt_api_misuse() -> None:
    """The stub repair keeps TensorRT signatures intact except the unparsable ones."""
    from sr_edge.backends.typecheck import repair_stub

    text = "import typing\nclass A:\n    def f(self, in: int) -> int: ...\n    def g(self, x: int) -> str: ...\n"
    repaired, fixed = repair_stub(text)
    assert fixed == 1
    assert "def f(*args: typing.Any, **kwargs: typing.Any) -> int: ..." in repaired
    assert "def g(self, x: int) -> str: ..." in repaired


# --- TensorRT at runtime: only where TensorRT >= 10, cuda-python and a CUDA GPU exist ------------


@pytest.fixture
def trt_ready(tmp_path: Path) -> Path:
    _require("tensorrt")
    return tmp_path / "trt-cache"


@pytest.mark.tensorrt
def test_tensorrt_engine_cache_and_profile(
    trt_ready: Path, bundles: dict[str, tuple[Path, Path]], photo: np.ndarray
) -> None:
    ckpt, bundle = bundles["espcn"]
    x = _crop(photo, "espcn")
    profile = ShapeRange((1, 16, 16), (1, 96, 120), (2, 128, 128))
    first = load_bundle(bundle, "tensorrt", cache_dir=str(trt_ready), profile=profile)
    with first:
        assert not first.engine_cached  # type: ignore[attr-defined]
        assert _psnr(first.run(x), _reference(ckpt, x)) >= 50.0
        with pytest.raises(SrEdgeError, match="outside the built range"):
            first.run(np.zeros((1, 1, 200, 64), np.float32))
    with load_bundle(bundle, "tensorrt", cache_dir=str(trt_ready), profile=profile) as again:
        assert again.engine_cached  # type: ignore[attr-defined]
        assert again.build_seconds < first.build_seconds
    with load_bundle(bundle, "tensorrt", precision="fp16", cache_dir=str(trt_ready), profile=profile) as half:
        assert _psnr(half.run(x), _reference(ckpt, x)) >= 35.0
    assert len(list(trt_ready.glob("*.engine"))) == 2 and list(trt_ready.glob("timing-*.cache"))


def test_a_zoo_name_on_a_runtime_runs_its_shipped_bundle() -> None:
    """``eval espcn --backend openvino`` / ``upscale fsrcnn ...`` on a runtime: the committed bundle."""
    from sr_edge.resolve import create_upscaler
    from sr_edge.source import shipped_bundle

    assert shipped_bundle("espcn", 3) is not None and shipped_bundle("ecbsr-m4c8", 2) is None
    up = create_upscaler("espcn", 3, backend="ort")
    lr = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    assert up.name.startswith("espcn") and up(lr).shape == (27, 33, 3)
    with pytest.raises(SrEdgeError, match="unknown weights tag"):
        create_upscaler("espcn:x2", 3, backend="ort")


def test_openvino_bf16_is_not_native_under_a_capped_onednn_isa(monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_edge.backends.openvino_backend import _isa_cap

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "caps the kernels below AVX512_CORE_BF16" in str(_isa_cap("bf16"))
    assert _isa_cap("fp32") is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx10_1_512_amx")
    assert _isa_cap("bf16") is None and _isa_cap("fp16") is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert _isa_cap("bf16") is None
