"""The shipped weights and the committed bundles: what a user gets from ``pip install``.

Golden numbers: every shipped model reproduces the Set5 PSNR/SSIM of its model card (the
card was measured when the weights were shipped), and every committed bundle under
``export/`` on every available backend stays within 0.01 dB of that torch number and
reproduces the torch output at >= 50 dB on a real photo. The published targets of issue
3 are checked where the shipped model reaches them, and the edge-efficient family must
beat the classic models at fewer MACs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from sr_edge.backends import available_backends, load_bundle
from sr_edge.bundle import find_bundles, read_bundle
from sr_edge.data.datasets import PROJECT_ROOT, resolve_dataset
from sr_edge.errors import SrEdgeError
from sr_edge.evaluate import evaluate
from sr_edge.metrics import psnr
from sr_edge.models import create_model, list_models, model_card, model_stats
from sr_edge.models.registry import shipped_card, shipped_scales
from sr_edge.resolve import create_upscaler

SHIPPED = [(m, s) for m in list_models() for s in shipped_scales(m)]
ALL_BUNDLES = find_bundles(PROJECT_ROOT / "export")
# export/<model>/x<s>: the shipped weights as exported; x<s>-int8 and x<s>-pruned<NN> are
# variants of them, tested against their own records below
BUNDLES = [b for b in ALL_BUNDLES if re.fullmatch(r"x\d", b.name)]
INT8 = [b for b in ALL_BUNDLES if b.name.endswith("-int8")]
PRUNED = [b for b in ALL_BUNDLES if "-pruned" in b.name]


def _set5():
    try:
        return resolve_dataset("Set5")
    except SrEdgeError:
        pytest.skip("Set5 not found: ../shared/datasets is absent (a user's fresh clone)")


def test_light_models_ship_at_every_scale() -> None:
    """Issue 3: FSRCNN, ESPCN and the edge-efficient family ship trained x2, x3 and x4."""
    for name in ("fsrcnn", "espcn", "ecbsr-m4c16"):
        assert shipped_scales(name) == [2, 3, 4], name
        for s in (2, 3, 4):
            card = shipped_card(name, s)
            assert card is not None and card["params"] < 100_000
            assert {"Set5", "Set14", "B100"} <= set(card["quality"]), f"{name} x{s} card lacks the eval sets"


@pytest.mark.parametrize(("name", "scale"), SHIPPED, ids=lambda v: str(v))
def test_shipped_weights_reproduce_their_card(name: str, scale: int) -> None:
    card = shipped_card(name, scale)
    assert card is not None and card["scale"] == scale and card["model"] == name
    r = evaluate(create_upscaler(name, scale), _set5())
    assert r.psnr_y == pytest.approx(card["quality"]["Set5"]["psnr_y"], abs=0.005)
    assert r.ssim_y == pytest.approx(card["quality"]["Set5"]["ssim_y"], abs=0.0002)


def _card_psnr(name: str, scale: int, ds: str) -> float:
    card = shipped_card(name, scale)
    assert card is not None
    return float(card["quality"][ds]["psnr_y"])


def test_shipped_fsrcnn_x2_and_edge_family_against_the_literature() -> None:
    """The measured cards against published.md; see the issue notes for the targets not yet met."""
    if shipped_card("ecbsr-m4c16", 2) is None or "B100" not in shipped_card("ecbsr-m4c16", 2)["quality"]:
        pytest.skip("no measured cards")
    # The edge-efficient family beats published FSRCNN x2 (37.00 / 32.63 / 31.53) ...
    for ds, target in (("Set5", 37.00), ("Set14", 32.63), ("B100", 31.53)):
        assert _card_psnr("ecbsr-m4c16", 2, ds) >= target
    # Our FSRCNN x2 reaches the published FSRCNN on Set14 and B100 (Set5 not yet: see issue 3).
    for ds, target in (("Set14", 32.63), ("B100", 31.53)):
        assert _card_psnr("fsrcnn", 2, ds) >= target, ds
    # ... and our own FSRCNN and ESPCN at every scale and set, at fewer MACs per pixel.
    for s in (2, 3, 4):
        edge = model_stats(create_model("ecbsr-m4c16", s).deploy(), 1, s).macs_per_output_pixel
        for classic in ("fsrcnn", "espcn"):
            assert edge < model_stats(create_model(classic, s).deploy(), 1, s).macs_per_output_pixel
            for ds in ("Set5", "Set14", "B100"):
                assert _card_psnr("ecbsr-m4c16", s, ds) > _card_psnr(classic, s, ds), (classic, s, ds)


def test_every_shipped_model_has_a_committed_bundle() -> None:
    have = {(read_bundle(b).model, read_bundle(b).scale) for b in BUNDLES}
    assert set(SHIPPED) <= have, sorted(set(SHIPPED) - have)


def _photo(channels: int) -> np.ndarray:
    """A real photo crop (scikit-image's astronaut), NCHW float32 in [0, 1]."""
    from sr_edge.data.color import rgb_to_ycbcr
    from sr_edge.data.io import read_image

    try:
        samples = resolve_dataset(None)
    except SrEdgeError as e:
        pytest.skip(str(e))
    img = read_image(samples.files[0])[100:196, 160:288, :3].astype(np.float32) / 255.0
    x = rgb_to_ycbcr(img)[..., :1] if channels == 1 else img
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


@pytest.mark.parametrize("backend", ["ort", "openvino"])
@pytest.mark.parametrize("bundle_dir", BUNDLES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_committed_bundles_match_torch(bundle_dir: Path, backend: str) -> None:
    """Parity: fp32 output vs the torch reference >= 50 dB; Set5 PSNR within 0.01 dB of torch's card."""
    import torch

    if backend not in available_backends():
        pytest.skip(f"backend {backend} is not installed")
    bundle = read_bundle(bundle_dir)
    name, scale = bundle.model, bundle.scale
    x = _photo(bundle.channels)
    with torch.no_grad():
        ref = create_model(name, scale, pretrained=True).deploy().eval()(torch.from_numpy(x)).numpy()
    with load_bundle(bundle_dir, backend=backend) as session:
        out = session.run(x)
    assert psnr(np.clip(out, 0, 1) * 255, np.clip(ref, 0, 1) * 255) >= 50.0
    assert model_card(name).color_mode == bundle.color_mode
    try:
        set5 = resolve_dataset("Set5")
    except SrEdgeError:
        return  # a user's fresh clone: the Set5 half of the parity needs ../shared/datasets
    r = evaluate(create_upscaler(str(bundle_dir), scale, backend=backend), set5)
    assert r.psnr_y == pytest.approx(_card_psnr(name, scale, "Set5"), abs=0.01)


@pytest.mark.parametrize("bundle_dir", INT8, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_int8_bundles_reproduce_their_recorded_quality(bundle_dir: Path) -> None:
    """An int8 bundle: three placements (TensorRT, OpenVINO, ORT), TensorRT's passes check-trt,
    and each CPU runtime's Set5 PSNR-Y is at least what quantize measured and recorded (less
    0.05 dB: the fused integer kernels round by CPU class) and at most fp32's. Not equal: the
    recorded figures come from a CPU without VNNI, where OpenVINO's u8s8 kernels saturate
    (ecbsr-m4c16 x4-int8 30.33 dB there, 30.64 on an AMD Zen 5 with VNNI, fp32 30.71); a loss
    against fp32 of under 0.5 dB (the 0.1 dB target and where it is missed: docs/compression.md)."""
    from sr_edge.backends.trt_check import check_tensorrt

    bundle = read_bundle(bundle_dir)
    assert bundle.precision == "int8"
    assert set(bundle.manifest["files"]) == {"model.onnx", "model-openvino.onnx", "model-ort.onnx"}
    assert bundle.placements["tensorrt"] == "model.onnx"
    quant = bundle.manifest["quantization"]
    # what measured best on each CPU class (VNNI and not), and what runs on this one
    from sr_edge.devices.probe import int8_cpu_class

    by_cpu = bundle.manifest["placements_by_cpu"]
    assert set(quant["placement_choice"]) == set(by_cpu) == {"vnni", "no-vnni"}
    for cls, choices in quant["placement_choice"].items():
        for backend, choice in choices.items():
            assert by_cpu[cls][backend] == choice["chosen"] in bundle.manifest["files"]
            if cls == int8_cpu_class():
                assert bundle.onnx_for(backend).name == choice["chosen"]
    import onnx

    report = check_tensorrt(onnx.load(str(bundle.onnx_for("tensorrt"))))
    assert report.ok, report.problems
    set5 = _set5()
    for backend in ("ort", "openvino"):
        if backend not in available_backends() or backend not in quant["metrics"]:
            continue
        r = evaluate(create_upscaler(str(bundle_dir), bundle.scale, backend=backend), set5)
        recorded = quant["metrics"][backend]["Set5"]["psnr_y"]
        fp32 = quant["fp32_metrics"][backend]["Set5"]["psnr_y"]
        assert recorded - 0.05 <= r.psnr_y <= fp32 + 0.05, (backend, r.psnr_y, recorded, fp32)
        assert quant["drop_db"][backend]["Set5"] > -0.5, backend  # a loss, never a collapse (targets: the notes)


@pytest.mark.parametrize("bundle_dir", PRUNED, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_pruned_bundles_reproduce_their_card(bundle_dir: Path) -> None:
    """A pruned bundle: at least half the MACs removed, its card's Set5 PSNR-Y through ORT."""
    bundle = read_bundle(bundle_dir)
    variant = bundle_dir.name.split("-", 1)[1]
    card_path = PROJECT_ROOT / "sr_edge" / "weights" / f"{bundle.model}_x{bundle.scale}_{variant}.json"
    card = json.loads(card_path.read_text())
    assert card["removed_macs"] >= 0.5 and card["macs_per_output_pixel"] < card["parent"]["macs_per_output_pixel"]
    r = evaluate(create_upscaler(str(bundle_dir), bundle.scale, backend="ort"), _set5())
    assert r.psnr_y == pytest.approx(card["quality"]["Set5"]["psnr_y"], abs=0.01)
