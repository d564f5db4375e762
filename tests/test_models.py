"""One check over every registered model, plus the architecture-specific algebra."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from sr_edge.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from sr_edge.errors import SrEdgeError  # noqa: E402
from sr_edge.models import (  # noqa: E402
    create_model,
    list_models,
    model_card,
    model_from_checkpoint,
    model_stats,
    register_model,
)
from sr_edge.models.classic import SubPixelDeconv  # noqa: E402

MODELS = list_models()


def test_registry_lists_the_zoo() -> None:
    for name in [
        "srcnn",
        "fsrcnn",
        "espcn",
        "edsr-baseline",
        "edsr-small",
        "rrdbnet",
        "srvggnet-compact",
        "ecbsr-m4c16",
    ]:
        assert name in MODELS


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("espcn", family="x", color_mode="y", paper="", description="")(lambda scale: None)


def test_unknown_model_and_bad_option() -> None:
    with pytest.raises(SrEdgeError, match="unknown model"):
        create_model("nope", 2)
    with pytest.raises(SrEdgeError, match="bad option"):
        create_model("espcn", 2, no_such_option=3)
    with pytest.raises(SrEdgeError, match="scale"):
        create_model("espcn", 5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_at_odd_size(name: str, scale: int) -> None:
    card = model_card(name)
    torch.manual_seed(0)
    model = create_model(name, scale).eval()
    x = torch.rand(1, card.channels, 37, 53)
    with torch.no_grad():
        y = model(x)
        y_deploy = model.deploy()(x)
    assert y.shape == (1, card.channels, 37 * scale, 53 * scale)
    assert torch.isfinite(y).all()
    assert (y - y_deploy).abs().max() < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_through_checkpoint(tmp_path: Path, name: str) -> None:
    torch.manual_seed(1)
    model = create_model(name, 2)
    path = save_checkpoint(tmp_path / "m.safetensors", name, 2, model.state_dict(), meta={"step": 7})
    restored, ckpt = model_from_checkpoint(path)
    assert ckpt.model == name and ckpt.scale == 2 and ckpt.meta["step"] == 7
    for key, value in model.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    assert (tmp_path / "m.json").is_file()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_ecbsr_reparameterisation_is_exact(scale: int) -> None:
    torch.manual_seed(scale)
    model = create_model("ecbsr-m4c16", scale).eval()
    # Make every branch matter: random, not near-zero, scales and biases.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(2, 1, 29, 31)
    with torch.no_grad():
        branches = model.forward_branches(x)
        collapsed = model.deploy()(x)
    assert (branches - collapsed).abs().max() < 1e-5
    plain = model.deploy()
    assert all(isinstance(m, (torch.nn.Conv2d, torch.nn.PReLU, torch.nn.Sequential)) for m in plain.body.modules())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_subpixel_deconv_equals_transposed_conv(scale: int) -> None:
    torch.manual_seed(0)
    layer = SubPixelDeconv(8, 1, 9, scale, 4)
    torch.nn.init.normal_(layer.weight, std=0.1)
    torch.nn.init.normal_(layer.bias, std=0.1)
    x = torch.rand(2, 8, 11, 14)
    with torch.no_grad():
        assert (layer(x) - layer.as_conv_transpose()(x)).abs().max() < 1e-5


def test_macs_match_published_counts() -> None:
    # published.md: SRCNN 57K params / 52.7 GMACs for a 1280x720 output.
    stats = model_stats(create_model("srcnn", 2), 1, 2)
    assert stats.params == 57281
    assert stats.gmacs(1280, 720) == pytest.approx(52.7, abs=0.1)
    # ESPCN x2 (RGB, as in DESIGN.md): ~12.3 GFLOP per 640x360 input, i.e. 6.15 GMACs.
    espcn_rgb = model_stats(create_model("espcn", 2, channels=3), 3, 2)
    assert espcn_rgb.gmacs(1280, 720) == pytest.approx(6.15, rel=0.02)


def test_edge_family_costs_less_than_the_classics() -> None:
    for scale in (2, 3, 4):
        ecb = model_stats(create_model("ecbsr-m4c16", scale).deploy(), 1, scale).macs_per_output_pixel
        assert ecb < model_stats(create_model("fsrcnn", scale), 1, scale).macs_per_output_pixel
        assert ecb < model_stats(create_model("espcn", scale), 1, scale).macs_per_output_pixel


def test_bad_checkpoints_give_one_line_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a checkpoint at all")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    good = save_checkpoint(tmp_path / "good.safetensors", "espcn", 3, create_model("espcn", 3).state_dict())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:200])
    for path, needle in [
        (garbage, "corrupt"),
        (foreign, "not an sr-edge checkpoint"),
        (truncated, "corrupt"),
        (tmp_path / "missing.safetensors", "no such"),
    ]:
        with pytest.raises(SrEdgeError, match=needle) as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value)
    with pytest.raises(SrEdgeError, match="weights are for x3, not x2"):
        model_from_checkpoint(good, scale=2)
    mismatched = save_checkpoint(tmp_path / "mm.safetensors", "espcn", 2, create_model("espcn", 3).state_dict())
    with pytest.raises(SrEdgeError, match="do not fit"):
        model_from_checkpoint(mismatched)
