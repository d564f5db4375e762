"""Structured pruning: every registered architecture, the recorded architecture every verb
loads, the one-line errors that write nothing, and exact resume after Ctrl-C (tiny real runs
on real photo crops)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from sr_edge.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from sr_edge.compress.prune import (  # noqa: E402
    PRUNED,
    RECORD,
    PruneConfig,
    allowed_widths,
    default_round_to,
    prune,
    prune_model,
)
from sr_edge.data import write_image  # noqa: E402
from sr_edge.errors import SrEdgeError  # noqa: E402
from sr_edge.models import create_model, list_models, model_card, model_from_checkpoint, model_stats  # noqa: E402
from sr_edge.models.registry import architecture_record  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """torch on one thread (restored after): its 2-thread kernels stall when other jobs share
    the 2 cores, and these tensors are tiny."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# Architectures torch-pruning cannot take apart, with the reason the one-line error gives.
CANNOT_PRUNE = {"rrdbnet": "torch-pruning cannot prune this architecture"}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 72x80 crops of real photos (scikit-image's bundled images)."""
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("hr")
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    for i in range(6):
        img = photos[i % 3]
        y, x = 40 + 30 * i, 60 + 20 * i
        write_image(folder / f"img{i}.png", np.ascontiguousarray(img[y : y + 72, x : x + 80]))
    return folder


@pytest.fixture(scope="module")
def eval_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("eval")
    write_image(folder / "a.png", np.ascontiguousarray(data.astronaut()[200:248, 200:260]))
    write_image(folder / "b.png", np.ascontiguousarray(data.coffee()[100:148, 300:360]))
    return folder


def _calibration(channels: int, scale: int, size: int = 12) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One batch of two real photo crops (LR, HR), Y or RGB, in [0, 1]."""
    data = pytest.importorskip("skimage.data")
    from sr_edge.data.color import rgb_to_ycbcr
    from sr_edge.data.resize import imresize

    hr_side = size * scale
    crops = [
        data.astronaut()[150 : 150 + hr_side, 180 : 180 + hr_side],
        data.coffee()[80 : 80 + hr_side, 250 : 250 + hr_side],
    ]
    lrs, hrs = [], []
    for crop in crops:
        lr = imresize(crop, 1.0 / scale).astype(np.float32) / 255.0
        hr = crop.astype(np.float32) / 255.0
        if channels == 1:
            lr, hr = rgb_to_ycbcr(lr)[..., :1], rgb_to_ycbcr(hr)[..., :1]
        lrs.append(lr.transpose(2, 0, 1))
        hrs.append(hr.transpose(2, 0, 1))
    return [(torch.from_numpy(np.stack(lrs)), torch.from_numpy(np.stack(hrs)))]


@pytest.mark.parametrize("name", list_models())
def test_every_registered_architecture_prunes_or_says_why(name: str, tmp_path: Path) -> None:
    """Half the MACs go, in multiples of 16 channels, the output keeps its shape, and the
    checkpoint rebuilds itself."""
    card = model_card(name)
    torch.manual_seed(0)
    model = create_model(name, 2).eval()
    calibration = _calibration(card.channels, 2)
    if name in CANNOT_PRUNE:
        with pytest.raises(SrEdgeError) as info:
            prune_model(model, 2, card.channels, calibration, ratio=0.5, round_to=16, reconstruct=False, name=name)
        message = str(info.value)
        assert CANNOT_PRUNE[name] in message and name in message and "\n" not in message
        return
    net, plan = prune_model(model, 2, card.channels, calibration, ratio=0.5, round_to=16, reconstruct=False, name=name)
    before = model_stats(model.deploy(), card.channels, 2)
    after = model_stats(net, card.channels, 2)
    assert plan.macs_before == pytest.approx(before.macs_per_output_pixel)
    assert after.macs_per_output_pixel <= 0.5 * before.macs_per_output_pixel + 1e-6
    assert plan.removed >= 0.5 and after.params < before.params
    assert all(b == a or b % 16 == 0 or b < 16 for a, b in plan.widths.values())
    x = torch.rand(1, card.channels, 10, 14)
    with torch.no_grad():
        assert net.eval()(x).shape == model(x).shape
    # Pruned ECBSR is its deployment form; the checkpoint says so and rebuilds it alone.
    form = "train" if model.deploy() is model else "deploy"
    path = save_checkpoint(
        tmp_path / "p.safetensors", name, 2, net.state_dict(), {"architecture": architecture_record(net, form)}
    )
    again, _ = model_from_checkpoint(path)
    assert type(again) is type(net)
    with torch.no_grad():
        assert torch.allclose(again.eval()(x), net(x), atol=1e-6)
    assert model.deploy() is not net  # the caller's model is untouched
    assert model_stats(model.deploy(), card.channels, 2) == before


def test_pixel_shuffle_and_output_groups_stay_whole() -> None:
    """ESPCN's last conv feeds the pixel shuffle: its s^2 outputs are never pruned (x4: 16)."""
    model = create_model("espcn", 4, pretrained=True)
    net, plan = prune_model(model, 4, 1, _calibration(1, 4), ratio=0.5, round_to=8, reconstruct=False)
    assert "pixel shuffle" in plan.kept_whole["body.4"]
    assert net.body[4].out_channels == 16 and net.body[4].in_channels == net.body[2].out_channels


def test_reconstruction_starts_fine_tuning_nearer_the_parent() -> None:
    """FSRCNN: the least-squares refit (convs and the sub-pixel deconvolution) cuts the output error."""
    model = create_model("fsrcnn", 2, pretrained=True)
    _, plan = prune_model(model, 2, 1, _calibration(1, 2, size=16), ratio=0.5, round_to=16)
    assert plan.reconstructed_mse is not None and plan.reconstructed_mse < 0.5 * plan.calibration_mse


def test_allowed_widths_and_device_round_to() -> None:
    assert allowed_widths(64, 16) == [64, 48, 32, 16]
    assert allowed_widths(56, 16) == [56, 48, 32, 16]
    assert allowed_widths(12, 16) == [12, 8]  # narrower than the block: the largest power of two below
    assert allowed_widths(16, 16) == [16, 8]
    assert allowed_widths(3, 8) == [3, 2]
    from sr_edge.devices import load_profile

    assert default_round_to(load_profile("ci-cpu"))[0] == 16  # AVX-512
    assert default_round_to(load_profile("jetson-orin-nano"))[0] == 8  # TensorRT
    assert default_round_to(load_profile("generic-x86-cpu"))[0] == 8


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.2])
def test_ratio_outside_zero_one_is_a_one_line_error(ratio: float, tmp_path: Path) -> None:
    with pytest.raises(SrEdgeError, match=r"must lie in \(0, 1\)") as info:
        PruneConfig("espcn", 2, str(tmp_path / "run"), ratio=ratio)
    assert "\n" not in str(info.value)
    with pytest.raises(SrEdgeError, match="exactly one"):
        PruneConfig("espcn", 2, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def _cli(*args: str | Path, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sr_edge", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **popen,  # type: ignore[arg-type]
    )


def test_cli_errors_are_one_line_and_write_nothing(tmp_path: Path, image_folder: Path) -> None:
    """A ratio outside (0, 1), a wrong scale, a checkpoint of another architecture: one line on
    stderr, exit 2, no run folder."""
    fsrcnn = create_model("fsrcnn", 2)
    wrong = save_checkpoint(tmp_path / "wrong.safetensors", "espcn", 2, fsrcnn.state_dict())  # says espcn, holds fsrcnn
    cases = [
        (["espcn", "--ratio", "1.5", "--scale", "2"], "must lie in (0, 1)"),
        (["espcn", "--ratio", "0.5", "--scale", "5"], "scale"),
        ([wrong, "--ratio", "0.5", "--scale", "2"], "weights do not fit ESPCN"),
    ]
    for i, (args, expect) in enumerate(cases):
        out = tmp_path / f"run{i}"
        run = _cli("prune", *args, "--out", out, "--steps", "1", "--data", image_folder, "--eval-datasets")
        _, err = run.communicate(timeout=300)
        assert run.returncode == 2, (args, err)
        lines = [line for line in err.splitlines() if line.strip() and "warn" not in line.lower()]
        assert len(lines) == 1 and expect in lines[0], (args, err)
        assert not out.exists(), args


def test_bad_sources_and_targets_write_nothing(tmp_path: Path, image_folder: Path) -> None:
    """An unregistered model, a checkpoint of another scale, an unreachable target."""
    fsrcnn = create_model("fsrcnn", 2)
    foreign = save_checkpoint(tmp_path / "foreign.safetensors", "no-such-net", 2, fsrcnn.state_dict())
    x3 = save_checkpoint(tmp_path / "x3.safetensors", "fsrcnn", 3, create_model("fsrcnn", 3).state_dict())
    cases = [
        (dict(source=str(foreign)), "unknown model 'no-such-net'"),
        (dict(source=str(x3)), "weights are for x3, not x2"),
        (dict(ratio=None, target_macs=1.0), "cannot reach"),
    ]
    for i, (kw, expect) in enumerate(cases):
        out = tmp_path / f"run{i}"
        with pytest.raises(SrEdgeError, match=expect) as info:
            prune(_tiny(out, image_folder, steps=1, **kw), progress=False)
        assert "\n" not in str(info.value)
        assert not out.exists(), kw


def _tiny(out: Path, folder: Path, eval_folder: Path | None = None, **kw: object) -> PruneConfig:
    base: dict[str, object] = dict(
        source="espcn",
        scale=2,
        out=str(out),
        ratio=0.5,
        round_to=8,
        distill=True,
        calibration_batches=1,
        steps=8,
        batch_size=4,
        patch_size=12,
        val_every=4,
        ckpt_every=2,
        log_every=1,
        threads=1,
        val_fraction=0.2,
        data=(str(folder),),
        eval_datasets=(str(eval_folder),) if eval_folder else (),
    )
    base.update(kw)
    return PruneConfig(**base)  # type: ignore[arg-type]


def test_pruned_run_records_itself_and_every_verb_loads_it(
    image_folder: Path, eval_folder: Path, tmp_path: Path
) -> None:
    """prune.json says what happened; eval, export (ORT), the torch backend and train --init
    all load the pruned checkpoint with no extra arguments."""
    from sr_edge.backends import load_bundle
    from sr_edge.evaluate import evaluate
    from sr_edge.export import export_bundle
    from sr_edge.resolve import create_upscaler
    from sr_edge.train import TrainConfig, train

    result = prune(_tiny(tmp_path / "run", image_folder, eval_folder), progress=False)
    assert result.step == 8 and not result.interrupted
    record = json.loads((tmp_path / "run" / RECORD).read_text())
    assert record["params"]["after"] < record["params"]["before"]
    assert record["macs_per_output_pixel"]["after"] <= 0.5 * record["macs_per_output_pixel"]["before"]
    assert set(record["psnr_y"]) == {"parent", "pruned", "finetuned"}
    (ds,) = record["psnr_y"]["parent"]
    assert record["psnr_y"]["parent"][ds] > 25  # the shipped espcn on two real crops
    assert record["config"]["ratio"] == 0.5 and record["architecture"]["form"] == "train"
    meta = load_checkpoint(result.checkpoint).meta
    assert meta["architecture"]["shapes"] and meta["pruning"]["removed_macs"] >= 0.5

    upscaler = create_upscaler(str(result.checkpoint), 2)  # what `sr-edge eval CKPT` runs
    psnr = evaluate(upscaler, eval_folder).psnr_y
    assert psnr == pytest.approx(record["psnr_y"]["finetuned"][ds], abs=1e-3)

    bundle = export_bundle(str(result.checkpoint), tmp_path / "bundle", measure=False)
    x = torch.rand(1, 1, 20, 24)
    model, _ = model_from_checkpoint(result.checkpoint)
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    for backend in ("ort", "torch"):
        with load_bundle(bundle, backend) as session:
            assert np.allclose(session.run(x.numpy()), ref, atol=1e-4), backend

    cfg = TrainConfig("espcn", 2, (str(image_folder),), str(tmp_path / "again"), steps=2, batch_size=4, patch_size=12,
                      val_fraction=0.2, threads=1, init=str(result.checkpoint))  # fmt: skip
    again = train(cfg, progress=False)
    tuned, _ = model_from_checkpoint(again.last)
    assert [p.shape for p in tuned.parameters()] == [p.shape for p in model.parameters()]
    assert load_checkpoint(again.last).meta["init"]["copied"] == len(model.state_dict())


def test_ecbsr_is_pruned_in_its_deployment_form(image_folder: Path, tmp_path: Path) -> None:
    result = prune(_tiny(tmp_path / "run", image_folder, source="ecbsr-m4c16", steps=2), progress=False)
    model, ckpt = model_from_checkpoint(result.checkpoint)
    assert type(model).__name__ == "PlainSR" and ckpt.meta["architecture"]["form"] == "deploy"
    assert ckpt.model == "ecbsr-m4c16"


def test_an_existing_run_needs_resume(image_folder: Path, tmp_path: Path) -> None:
    prune(_tiny(tmp_path / "run", image_folder, steps=0), progress=False)
    assert (tmp_path / "run" / PRUNED).is_file()
    with pytest.raises(SrEdgeError, match="already holds a pruning run"):
        prune(_tiny(tmp_path / "run", image_folder, steps=0), progress=False)
    with pytest.raises(SrEdgeError, match="options differ"):
        prune(_tiny(tmp_path / "run", image_folder, steps=0, importance="magnitude"), resume=True, progress=False)


def _cli_args(folder: Path, out: Path, steps: int) -> list[str | Path]:
    return [
        "prune", "espcn", "--scale", "2", "--ratio", "0.5", "--round-to", "8", "--distill",
        "--calibration-batches", "1", "--steps", str(steps), "--batch-size", "4", "--patch-size", "12",
        "--log-every", "1", "--ckpt-every", "50", "--val-every", "1000", "--val-fraction", "0.2",
        "--threads", "1", "--data", folder, "--eval-datasets", "--out", out,
    ]  # fmt: skip


def test_ctrl_c_then_resume_equals_uninterrupted(image_folder: Path, tmp_path: Path) -> None:
    """SIGINT mid fine-tune: exit 130 with a checkpoint; --resume reaches the weights of an uninterrupted run."""
    steps = 100
    import concurrent.futures

    cfg = _tiny(tmp_path / "full", image_folder, steps=steps, ckpt_every=50, val_every=1000)
    run = _cli(*_cli_args(image_folder, tmp_path / "cut", steps))
    # the uninterrupted run, in this process beside the one to cut (the machine has two cores)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    pending = pool.submit(prune, cfg, progress=False)
    log = tmp_path / "cut" / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and run.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 10:
            run.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    stopped_at = json.loads((tmp_path / "cut" / "last.json").read_text())["step"]
    assert 10 <= stopped_at < steps
    assert not (tmp_path / "cut" / RECORD).exists()  # the record is written when the run ends
    full = pending.result(timeout=600)
    pool.shutdown()

    resumed = _cli(*_cli_args(image_folder, tmp_path / "cut", steps), "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    a, b = (
        load_checkpoint(full.checkpoint).state_dict,
        load_checkpoint(tmp_path / "cut" / "last.safetensors").state_dict,
    )
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert json.loads((tmp_path / "cut" / RECORD).read_text())["finetune"]["steps"] == steps
