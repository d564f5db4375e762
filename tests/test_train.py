"""Training: tiny real runs on real photo crops (seconds each)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sr_edge.checkpoint import load_checkpoint  # noqa: E402
from sr_edge.data import write_image  # noqa: E402
from sr_edge.errors import SrEdgeError  # noqa: E402
from sr_edge.train import PerceptualConfig, TrainConfig, learning_rate, train  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]


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


def tiny_config(folder: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        model="espcn",
        scale=2,
        data=(str(folder),),
        out=str(out),
        steps=8,
        batch_size=4,
        patch_size=12,
        val_every=4,
        ckpt_every=2,
        log_every=1,
        threads=1,
        val_fraction=0.2,
        model_options=(("n1", 8), ("n2", 8)),
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def test_tiny_run_writes_checkpoints_and_log(image_folder: Path, tmp_path: Path) -> None:
    result = train(tiny_config(image_folder, tmp_path / "run"), progress=False)
    assert result.step == 8 and not result.interrupted
    assert result.val_psnr is not None and 0 < result.val_psnr < 60  # 8 steps: far from trained
    meta = json.loads((tmp_path / "run" / "last.json").read_text())
    assert meta["step"] == 8 and meta["train_config"]["model"] == "espcn" and meta["data"]["val_images"]
    assert "commit" in meta["git"] or meta["git"] == {}
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 9))
    ckpt = load_checkpoint(tmp_path / "run" / "last.safetensors", with_training_state=True)
    assert "model" in ckpt.optimizers
    # Same seed, same weights: training is reproducible.
    again = train(tiny_config(image_folder, tmp_path / "run2"), progress=False)
    for k, v in weights(result.last).items():
        assert torch.equal(v, weights(again.last)[k]), k


def test_learning_rate_schedules() -> None:
    cfg = TrainConfig("espcn", 2, ("x",), "o", steps=100, lr=1e-3, lr_min=0.0, warmup_steps=10)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 10) == pytest.approx(1e-3)
    assert learning_rate(cfg, 99) < 1e-5
    step = TrainConfig("espcn", 2, ("x",), "o", steps=100, lr=1e-3, schedule="step")
    assert learning_rate(step, 30) == pytest.approx(5e-4)


def _cli(*args: str | Path, **popen: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "sr_edge", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,  # type: ignore[arg-type]
    )


def _train_args(folder: Path, out: Path, steps: int) -> list[str | Path]:
    return [
        "train", "espcn", "--scale", "2", "--data", folder, "--out", out, "--steps", str(steps),
        "--batch-size", "4", "--patch-size", "16", "--log-every", "1", "--ckpt-every", "50",
        "--val-every", "1000", "--threads", "1", "--val-fraction", "0.2",
    ]  # fmt: skip


def test_ctrl_c_then_resume_equals_uninterrupted(image_folder: Path, tmp_path: Path) -> None:
    steps = 200
    # the uninterrupted run and the one to cut run side by side (one thread each)
    full = _cli(*_train_args(image_folder, tmp_path / "full", steps))
    run = _cli(*_train_args(image_folder, tmp_path / "cut", steps))
    log = tmp_path / "cut" / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and run.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 20:
            run.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 130, err
    assert "resume" in err and "Traceback" not in err
    stopped_at = json.loads((tmp_path / "cut" / "last.json").read_text())["step"]
    assert 20 <= stopped_at < steps
    assert full.wait(timeout=600) == 0, full.stderr.read() if full.stderr else ""

    resumed = _cli(*_train_args(image_folder, tmp_path / "cut", steps), "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read() if resumed.stderr else ""
    a, b = weights(tmp_path / "full" / "last.safetensors"), weights(tmp_path / "cut" / "last.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_process_ddp_matches_one_process(image_folder: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo) trains the same model as one process."""
    args = _train_args(image_folder, tmp_path / "ddp", 12)
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "sr_edge",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _cli(*_train_args(image_folder, tmp_path / "one", 12))
    assert single.wait(timeout=600) == 0
    a, b = weights(tmp_path / "ddp" / "last.safetensors"), weights(tmp_path / "one" / "last.safetensors")
    assert json.loads((tmp_path / "ddp" / "last.json").read_text())["world_size"] == 2
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def _stop_and_resume_equals_one_run(folder: Path, tmp: Path, **kw: object) -> Path:
    """A constant-LR run to step 8 against one that stops at 4 and resumes to 8 (same batches)."""

    def cfg(out: str, **more: object) -> TrainConfig:
        return tiny_config(folder, tmp / out, schedule="constant", model="fsrcnn", model_options=(), **kw, **more)

    one = train(cfg("one"), progress=False)
    train(cfg("cut", steps=4), progress=False)
    cut = train(cfg("cut"), resume=True, progress=False)
    assert one.step == cut.step == 8
    a, b = weights(one.last), weights(cut.last)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    return one.last


def test_channels_last_run_resumes_exactly_and_trains_the_same_model(image_folder: Path, tmp_path: Path) -> None:
    """``--channels-last`` (a CPU speed-up for FSRCNN): resumable bit for bit, same maths as contiguous."""
    cl = _stop_and_resume_equals_one_run(image_folder, tmp_path / "cl", channels_last=True)
    plain = train(
        tiny_config(image_folder, tmp_path / "plain", schedule="constant", model="fsrcnn", model_options=()),
        progress=False,
    )
    a, b = weights(cl), weights(plain.last)
    assert all(v.is_contiguous() for v in a.values())  # checkpoints are stored in the plain layout
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    meta = json.loads((tmp_path / "cl" / "one" / "last.json").read_text())
    assert meta["train_config"]["channels_last"] is True


@pytest.mark.cuda
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_run_resumes_with_its_optimizer_state_on_the_gpu(
    image_folder: Path, tmp_path: Path, channels_last: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU, a resumed run's Adam state must land on the GPU (it once stayed on the CPU)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    _stop_and_resume_equals_one_run(image_folder, tmp_path, device="cuda", channels_last=channels_last)


def test_fine_tune_from_another_scale(image_folder: Path, tmp_path: Path) -> None:
    x2 = train(tiny_config(image_folder, tmp_path / "x2"), progress=False)
    x3 = train(tiny_config(image_folder, tmp_path / "x3", scale=3, patch_size=8, init=str(x2.last)), progress=False)
    meta = json.loads((tmp_path / "x3" / "last.json").read_text())
    assert meta["init"]["copied"] == 4 and meta["init"]["kept_initial"] == 2  # all but the x3 output conv
    assert x3.step == 8


def test_shipped_card_lists_every_fine_tune_stage(image_folder: Path, tmp_path: Path) -> None:
    from sr_edge.provenance import sha256_file
    from sr_edge.train.ship import lineage, ship

    a = train(tiny_config(image_folder, tmp_path / "a"), progress=False)
    b = train(tiny_config(image_folder, tmp_path / "b", steps=6, init=str(a.last)), progress=False)
    c = train(tiny_config(image_folder, tmp_path / "c", steps=4, init=str(b.last)), progress=False)
    card = ship(tmp_path / "c", dest=tmp_path / "weights")
    assert [st["steps"] for st in card["lineage"]] == [4, 6, 8] and card["total_steps"] == 18
    assert [st["from"]["sha256"] for st in card["lineage"][:2]] == [sha256_file(b.last), sha256_file(a.last)]
    assert "from" not in card["lineage"][-1] and card["lineage"][0]["device"] == "cpu"
    # A parent recorded only by sha256 (runs from before the record held the stage) is found
    # among --parents by its bytes, and one found nowhere ends the chain, flagged.
    meta = load_checkpoint(c.last).meta
    del meta["init"]["parent"]
    assert [st["steps"] for st in lineage(meta, [tmp_path / "b"])] == [4, 6, 8]
    assert lineage(meta)[-1]["from"]["found"] is False
    # Fine-tuned from shipped weights: the card beside them holds their whole lineage.
    shipped = tmp_path / "weights" / "espcn_x2.safetensors"
    card_path = shipped.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["lineage"][-1]["marker"] = "from the card"  # the weights' own record cannot hold this
    card_path.write_text(json.dumps(card))
    d = train(tiny_config(image_folder, tmp_path / "d", steps=2, init=str(shipped)), progress=False)
    meta = load_checkpoint(d.last).meta
    del meta["init"]["parent"]
    chain = lineage(meta, [shipped])
    assert [st["steps"] for st in chain] == [2, 4, 6, 8] and chain[-1]["marker"] == "from the card"


def test_training_input_errors(image_folder: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(SrEdgeError, match="holds no images"):
        train(tiny_config(empty, tmp_path / "a"), progress=False)
    with pytest.raises(SrEdgeError, match="smaller than the HR patch"):
        train(tiny_config(image_folder, tmp_path / "b", patch_size=40), progress=False)
    train(tiny_config(image_folder, tmp_path / "c", steps=2, val_every=1), progress=False)
    with pytest.raises(SrEdgeError, match="already holds a run"):
        train(tiny_config(image_folder, tmp_path / "c", steps=2), progress=False)
    with pytest.raises(SrEdgeError, match="options differ"):
        train(tiny_config(image_folder, tmp_path / "c", steps=4, lr=5e-4), resume=True, progress=False)
    last = (tmp_path / "c" / "last.safetensors").read_bytes()
    with pytest.raises(SrEdgeError, match=r"at step 2, past --steps 1; pass --steps 2 or more"):
        train(tiny_config(image_folder, tmp_path / "c", steps=1, val_every=1), resume=True, progress=False)
    assert (tmp_path / "c" / "last.safetensors").read_bytes() == last
    with pytest.raises(SrEdgeError, match="nothing to resume"):
        train(tiny_config(image_folder, tmp_path / "d"), resume=True, progress=False)
    with pytest.raises(SrEdgeError, match="batch_size must be positive"):
        tiny_config(image_folder, tmp_path / "e", batch_size=0)
    with pytest.raises(SrEdgeError, match=r"patch_size 1 is too small.*--patch-size 4 or more"):
        tiny_config(image_folder, tmp_path / "e", patch_size=1)
    user_file = tmp_path / "notes.txt"
    user_file.write_text("the user's file")
    for out in (user_file, user_file / "run"):
        with pytest.raises(SrEdgeError, match="is a file, not a folder"):
            train(tiny_config(image_folder, out, steps=2), progress=False)
    assert user_file.read_text() == "the user's file"


def test_cli_training_errors_are_one_line(image_folder: Path, tmp_path: Path) -> None:
    proc = _cli("train", "no-such-model", "--scale", "2", "--data", image_folder, "--out", tmp_path / "x")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and "unknown model" in err
    proc = _cli("train", "srvggnet-compact", "--scale", "2", "--data", image_folder, "--out", tmp_path / "y", "--gan")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and "--perceptual-weights" in err


def _random_vgg19(path: Path) -> Path:
    from safetensors.torch import save_file

    from sr_edge.train.gan import VGGFeatures

    torch.manual_seed(0)
    vgg = VGGFeatures(last_layer=36)  # the whole torchvision `features` block
    state = {f"features.{k}": v.clone() for k, v in vgg.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier too
    save_file(state, str(path))
    return path


@pytest.mark.parametrize("discriminator", ["unet", "vgg"])
def test_perceptual_gan_loop_on_tiny_inputs(image_folder: Path, tmp_path: Path, discriminator: str) -> None:
    vgg = _random_vgg19(tmp_path / "vgg19.safetensors")
    cfg = tiny_config(
        image_folder,
        tmp_path / "gan",
        model="srvggnet-compact",
        steps=3,
        val_every=3,
        patch_size=16,
        batch_size=2,
        model_options=(("num_conv", 2), ("num_feat", 8)),
        perceptual=PerceptualConfig(vgg_weights=str(vgg), discriminator=discriminator),
    )
    result = train(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "gan" / "log.jsonl").read_text().splitlines()]
    losses = [r for r in log if "l_d" in r]
    assert len(losses) == 3 and all(np.isfinite([r["l_percep"], r["l_g_adv"], r["l_d"]]).all() for r in losses)
    ckpt = load_checkpoint(result.last, with_training_state=True)
    assert "disc" in ckpt.modules and "disc" in ckpt.optimizers
    resumed = train(dataclasses.replace(cfg, steps=5), resume=True, progress=False)  # extend the run
    assert resumed.step == 5


def test_perceptual_needs_rgb_model_and_real_weights(image_folder: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    from sr_edge.train.gan import load_vgg19

    with pytest.raises(SrEdgeError, match="cannot read VGG19 weights"):
        load_vgg19(bad)
    vgg = _random_vgg19(tmp_path / "vgg.safetensors")
    with pytest.raises(SrEdgeError, match="needs an RGB model"):
        train(tiny_config(image_folder, tmp_path / "y", perceptual=PerceptualConfig(str(vgg))), progress=False)


def test_sr_edge_train_is_the_function(image_folder: Path, tmp_path: Path) -> None:
    """``sr_edge.train(config)`` runs training, also once the ``sr_edge.train`` package is imported
    (Python then binds the name to the package)."""
    import sr_edge
    from sr_edge import train as from_import

    assert "sr_edge.train" in sys.modules  # this module imported the package above
    for i, fn in enumerate((sr_edge.train, from_import)):
        result = fn(tiny_config(image_folder, tmp_path / f"r{i}", steps=2, val_every=1), progress=False)
        assert result.step == 2 and Path(result.last).is_file()
