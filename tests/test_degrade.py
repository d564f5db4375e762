"""Realistic degradations: kernels, JPEG, noise, the seeded training pipeline, its config
files, ``eval --degrade`` and exact resume of realistic training (tiny, real images)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sr_edge.data import write_image
from sr_edge.data.color import rgb_to_y
from sr_edge.data.degrade import (
    DegradationConfig,
    DegradationConfigError,
    blur_kernel,
    gaussian_kernel_1d,
    jpeg,
    parse_degrade,
    plan_degradation,
    realistic_lr,
    resolve_degradation,
)
from sr_edge.errors import SrEdgeError

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 96x120 crop of a real photo (scikit-image's astronaut)."""
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[40:136, 150:270])


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 72x80 crops of real photos, as tests/test_train.py uses."""
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("hr")
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    for i in range(6):
        img = photos[i % 3]
        y, x = 40 + 30 * i, 60 + 20 * i
        write_image(folder / f"img{i}.png", np.ascontiguousarray(img[y : y + 72, x : x + 80]))
    return folder


# --- primitives --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        dict(size=7, sigma_x=1.0),
        dict(size=21, sigma_x=3.0, sigma_y=0.7, angle=0.6),
        dict(size=15, sigma_x=2.0, sigma_y=1.0, angle=2.0, beta=3.0, shape="generalized"),
        dict(size=15, sigma_x=1.5, beta=1.5, shape="plateau"),
    ],
)
def test_kernels_sum_to_one_and_are_centred(args: dict[str, object]) -> None:
    k = blur_kernel(**args)  # type: ignore[arg-type]
    n = int(k.shape[0])
    assert k.shape == (n, n) and n == args["size"]
    assert k.sum() == pytest.approx(1.0, abs=1e-9) and (k >= 0).all()
    r = np.arange(n) - n // 2
    assert abs((k.sum(0) * r).sum()) < 1e-9 and abs((k.sum(1) * r).sum()) < 1e-9  # symmetric: no shift
    assert gaussian_kernel_1d(1.3).sum() == pytest.approx(1.0, abs=1e-12)


def test_anisotropic_kernel_is_longer_along_its_angle() -> None:
    k = blur_kernel(21, 4.0, 1.0, angle=0.0)  # long along x
    r = np.arange(21) - 10
    var_x, var_y = (k.sum(0) * r**2).sum(), (k.sum(1) * r**2).sum()
    assert var_x > 8 * var_y


def test_jpeg_quality_100_round_trip_is_within_one_grey_level(photo: np.ndarray) -> None:
    grey = np.ascontiguousarray(photo[..., 1])
    assert np.abs(jpeg(grey, 100).astype(int) - grey).max() <= 1
    # colour at full chroma resolution: libjpeg's integer RGB <-> YCbCr adds its own rounding
    # (a couple of levels at worst), so the luma the models see is within one level on average
    back = jpeg(photo, 100, subsampling="4:4:4")
    assert back.shape == photo.shape and back.dtype == np.uint8
    dy = np.abs(rgb_to_y(back) - rgb_to_y(photo))
    assert dy.mean() < 0.5 and np.quantile(dy, 0.95) <= 1.0 and dy.max() <= 3.0


def test_jpeg_quality_orders_the_error(photo: np.ndarray) -> None:
    err = [np.abs(jpeg(photo, q).astype(float) - photo).mean() for q in (95, 75, 30)]
    assert err[0] < err[1] < err[2]
    with pytest.raises(SrEdgeError, match="quality"):
        jpeg(photo, 0)


# --- the training pipeline ------------------------------------------------------------------


def test_same_seed_same_lr_and_another_seed_another(photo: np.ndarray) -> None:
    cfg = DegradationConfig(clean_prob=0.0)
    hr = photo[:96, :120]
    a = realistic_lr(hr, 2, cfg, np.random.default_rng([7, 1]))
    b = realistic_lr(hr, 2, cfg, np.random.default_rng([7, 1]))
    assert a.shape == (48, 60, 3) and a.dtype == np.uint8
    # libjpeg may round differently on another SIMD path: compare values, not bytes
    assert np.abs(a.astype(int) - b).max() <= 1
    others = [realistic_lr(hr, 2, cfg, np.random.default_rng([7, i])) for i in range(2, 6)]
    assert any(np.abs(o.astype(int) - a).mean() > 0.5 for o in others)


def test_clean_plan_is_the_protocol_lr(photo: np.ndarray) -> None:
    from sr_edge.data import imresize

    hr = photo[:96, :120]
    lr = realistic_lr(hr, 4, DegradationConfig(clean_prob=1.0), np.random.default_rng(0))
    assert np.array_equal(lr, imresize(hr, 0.25))


def test_the_preset_covers_jpeg_noise_and_blur() -> None:
    """The plans drawn from the realistic preset include every kind, at the documented levels."""
    cfg = DegradationConfig()
    plans = [plan_degradation(cfg, 2, np.random.default_rng([0, i])) for i in range(400)]
    rounds = [p.first for p in plans if not p.clean]
    qualities = [r.quality for r in rounds if r.quality is not None]
    sigmas = [r.noise[1] for r in rounds if r.noise and r.noise[0] == "gaussian"]
    assert 0.05 < sum(p.clean for p in plans) / len(plans) < 0.2
    assert min(qualities) <= 40 and max(qualities) >= 90
    assert min(sigmas) < 3 and max(sigmas) > 8
    assert any(r.kernel is not None and r.kernel.ndim == 2 for r in rounds)  # anisotropic / generalised
    assert any(p.second is not None for p in plans)
    assert {r.method for r in rounds} == set(cfg.resize.methods)


def test_degradation_toml_loads_and_errors_are_one_line(tmp_path: Path) -> None:
    good = tmp_path / "mine.toml"
    good.write_text("clean_prob = 0.2\n[jpeg]\nquality = [40, 90]\n[second.noise]\nprob = 0.0\n")
    cfg = DegradationConfig.from_toml(good)
    assert cfg.clean_prob == 0.2 and cfg.jpeg.quality == (40, 90) and cfg.second.noise.prob == 0.0
    assert cfg.noise == DegradationConfig().noise  # keys not given keep the preset's values
    assert resolve_degradation(str(good)) == cfg
    assert DegradationConfig.from_mapping(cfg.to_json()) == cfg  # the checkpoint record round-trips
    cases = {
        "[jpeg]\nqualty = [40, 90]\n": r"unknown key\(s\) 'qualty' in \[jpeg\]",
        "[jpeg]\nquality = [0, 90]\n": r"jpeg\.quality must be \[low, high\]",
        "[noise]\nprob = 1.5\n": r"noise\.prob must be a probability",
        "[second.blur]\nsigma = [2.0, 1.0]\n": r"second\.blur\.sigma",
        "[resize]\nmethods = ['bicubic', 'nearest']\nweights = [1, 1]\n": r"unknown method\(s\) \['nearest'\]",
        "speed = 3\n": r"unknown key\(s\) 'speed'",
        "[jpeg\n": r"not valid TOML",
    }
    for i, (text, message) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.toml"
        bad.write_text(text)
        with pytest.raises(DegradationConfigError if "TOML" not in message else SrEdgeError, match=message) as e:
            DegradationConfig.from_toml(bad)
        assert "\n" not in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(SrEdgeError, match="unknown degradation"):
        resolve_degradation("gaussian")


# --- evaluation forms ----------------------------------------------------------------------------


def test_degrade_forms_parse_compose_and_seed(photo: np.ndarray, tmp_path: Path) -> None:
    d = parse_degrade("jpeg:75+noise:5")
    assert d.name == "jpeg:75+noise:5" and len(d.ops) == 2
    assert parse_degrade("none").ops == () and parse_degrade("blur:1.2").name == "blur:1.2"
    lr = photo[:48, :60]
    a, b = d.apply(lr, "bird"), d.apply(lr, "bird")
    assert np.abs(a.astype(int) - b).max() <= 1  # fixed seed per image
    assert np.abs(d.apply(lr, "baby").astype(int) - a).mean() > 0.5  # another image, other noise
    blurred = parse_degrade("blur:1.2").apply(lr)
    assert np.abs(np.diff(blurred.astype(float), axis=1)).mean() < np.abs(np.diff(lr.astype(float), axis=1)).mean()
    noisy = parse_degrade("noise:5").apply(np.full((64, 64, 3), 128, np.uint8))
    assert noisy.astype(float).std() == pytest.approx(5.0, rel=0.1)
    f = tmp_path / "d.toml"
    f.write_text('seed = 3\n[[step]]\nop = "jpeg"\nquality = 75\n[[step]]\nop = "noise"\nsigma = 5.0\ngrey = true\n')
    assert parse_degrade(str(f)).name == "jpeg:75+noise-grey:5" and parse_degrade(str(f)).seed == 3
    for spec, message in [
        ("jpg:75", "unknown --degrade form 'jpg:75'"),
        ("jpeg", "unknown --degrade form 'jpeg'"),
        ("noise:lots", "is not a number"),
        ("jpeg:75+sharpen:2", "unknown --degrade form 'sharpen:2'"),
        ("jpeg:101", "quality must be in"),
    ]:
        with pytest.raises(SrEdgeError, match=message) as e:
            parse_degrade(spec)
        assert "\n" not in str(e.value)
    f.write_text('[[step]]\nop = "jpeg"\nqualty = 75\n')
    with pytest.raises(SrEdgeError, match=r"step 1 \(jpeg\): unknown key\(s\) 'qualty'"):
        parse_degrade(str(f))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sr_edge", *args], capture_output=True, text=True, cwd=PROJECT, timeout=300
    )


def test_eval_degrade_on_a_tiny_folder(image_folder: Path, tmp_path: Path) -> None:
    from sr_edge.data.datasets import resolve_dataset
    from sr_edge.evaluate import evaluate
    from sr_edge.resolve import create_upscaler

    up = create_upscaler("bicubic", 2)
    ds = resolve_dataset(str(image_folder))
    clean = evaluate(up, ds)
    worse = evaluate(up, ds, degradation=parse_degrade("jpeg:30"))
    assert worse.degrade == "jpeg:30" and worse.psnr_y < clean.psnr_y - 0.5
    assert "degrade" not in clean.to_json() and worse.to_json()["degrade"] == "jpeg:30"


def test_eval_degrade_cli_rows_and_one_line_errors(image_folder: Path, tmp_path: Path) -> None:
    from sr_edge.data.datasets import resolve_dataset
    from sr_edge.evaluate import evaluate
    from sr_edge.resolve import create_upscaler

    up, ds = create_upscaler("bicubic", 2), resolve_dataset(str(image_folder))
    clean, worse = evaluate(up, ds), evaluate(up, ds, degradation=parse_degrade("jpeg:30"))
    run = _cli("eval", "bicubic", "-d", str(image_folder), "--degrade", "none", "jpeg:30", "--json")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert [r.get("degrade") for r in rows] == [None, "jpeg:30"]
    assert rows[0]["psnr_y"] == pytest.approx(clean.psnr_y, abs=1e-6)
    assert rows[1]["psnr_y"] == pytest.approx(worse.psnr_y, abs=0.05)
    bad = _cli("eval", "bicubic", "-d", str(image_folder), "--degrade", "jpeg:75+sharpen:2")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and "unknown --degrade form 'sharpen:2'" in bad.stderr
    toml = tmp_path / "bad.toml"
    toml.write_text('[[step]]\nop = "noise"\nsigma = 500.0\n')
    bad = _cli("eval", "bicubic", "-d", str(image_folder), "--degrade", str(toml))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "sigma must be in" in bad.stderr


# --- training ------------------------------------------------------------------------------------


def test_realistic_training_resumes_exactly_across_a_pool(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    from sr_edge.checkpoint import load_checkpoint
    from sr_edge.train import TrainConfig, train
    from sr_edge.train import data as train_data

    monkeypatch.setattr(train_data, "POOL_CHUNK", 3)  # the cut at step 4 falls inside the second pool

    def cfg(out: str, **kw: object) -> TrainConfig:
        base: dict[str, object] = dict(
            model="fsrcnn", scale=2, data=(str(image_folder),), out=str(tmp_path / out), steps=8, batch_size=4,
            patch_size=12, val_every=4, ckpt_every=2, log_every=1, threads=1, val_fraction=0.2,
            schedule="constant", degradation="realistic",
        )  # fmt: skip
        base.update(kw)
        return TrainConfig(**base)  # type: ignore[arg-type]

    one = train(cfg("one"), progress=False)
    train(cfg("cut", steps=4), progress=False)
    cut = train(cfg("cut"), resume=True, progress=False)
    assert one.step == cut.step == 8
    a, b = load_checkpoint(one.last).state_dict, load_checkpoint(cut.last).state_dict
    for k in a:
        assert torch.equal(a[k], b[k]), k
    meta = load_checkpoint(one.last).meta
    assert meta["train_config"]["degradation"] == "realistic"
    assert DegradationConfig.from_mapping(meta["train_config"]["degradation_config"]) == DegradationConfig()
    # realistic batches differ from bicubic ones, and other settings refuse to resume the run
    bic = train(cfg("bic", degradation="bicubic"), progress=False)
    assert any(not torch.equal(a[k], load_checkpoint(bic.last).state_dict[k]) for k in a)
    other = tmp_path / "other.toml"
    other.write_text("clean_prob = 0.5\n")
    with pytest.raises(SrEdgeError, match="degradation"):
        train(cfg("cut", steps=10, degradation=str(other)), resume=True, progress=False)


def test_train_cli_degradation_reaches_the_run_and_bad_values_are_one_line(image_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from sr_edge.checkpoint import load_checkpoint

    out = tmp_path / "cli"
    common = ("--scale", "2", "--data", str(image_folder), "--steps", "2", "--batch-size", "2", "--patch-size", "12")
    run = _cli("train", "fsrcnn", *common, "--out", str(out), "--threads", "1", "--degradation", "realistic")
    assert run.returncode == 0, run.stderr
    assert load_checkpoint(out / "last.safetensors").meta["train_config"]["degradation"] == "realistic"
    bad = _cli("train", "fsrcnn", *common, "--out", str(tmp_path / "bad"), "--degradation", "sharpen")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    assert "degradation" in bad.stderr and not (tmp_path / "bad" / "last.safetensors").exists()


def test_realistic_patches_are_aligned_and_deterministic(image_folder: Path) -> None:
    from sr_edge.data import imresize
    from sr_edge.train.data import PatchSampler, training_files

    files = training_files([str(image_folder)])
    clean = PatchSampler(files, 2, "y", 12, degradation=DegradationConfig(clean_prob=1.0))
    lr, hr = clean.batch(0, 3, 8)
    assert lr.shape == (8, 1, 12, 12) and hr.shape == (8, 1, 24, 24)
    # clean tiles are the protocol's LR: each LR patch is the bicubic downsampling of its HR
    # patch (inside, where the patch's own border does not matter; Y is affine in RGB, so only
    # the uint8 rounding and clipping of RGB differ), and a pixel's shift is far worse
    for i in range(8):
        down = imresize(hr[i, 0].astype(np.float64), 0.5)[2:-2, 2:-2]
        err = np.abs(down - lr[i, 0, 2:-2, 2:-2]).mean()
        shifted = np.abs(down - lr[i, 0, 3:-1, 2:-2]).mean()
        assert err < 0.75 / 255 and (shifted > 3 * err or shifted > 2 / 255)
    noisy = PatchSampler(files, 2, "y", 12, degradation=DegradationConfig(clean_prob=0.0))
    x1, y1 = noisy.batch(5, 7, 8)
    fresh = PatchSampler(files, 2, "y", 12, degradation=DegradationConfig(clean_prob=0.0))
    x2, y2 = fresh.batch(5, 7, 8)  # a new sampler (a resumed run) rebuilds the same pool
    assert np.array_equal(y1, y2) and np.abs(x1 - x2).max() <= 1.5 / 255
    assert np.abs(x1 - lr).mean() > 0  # sanity: degraded differs from clean


def test_bench_sheet_gets_a_degraded_input_row(image_folder: Path, tmp_path: Path) -> None:
    from sr_edge.bench.crops import prepare_crops
    from sr_edge.data import read_image
    from sr_edge.data.datasets import resolve_dataset
    from sr_edge.resolve import create_upscaler

    sheet = prepare_crops(resolve_dataset(str(image_folder)), 48, [2], tmp_path / "results.json")
    assert sheet is not None
    degraded = sheet.info["degraded"]
    assert degraded["form"] == "jpeg:50" and degraded["suffix"] == "__jpeg50"
    folder = tmp_path / sheet.info["folder"]
    lr_box = read_image(folder / degraded["input"]["2"])
    assert lr_box.shape[:2] == (sheet.spec.size // 2, sheet.spec.size // 2)
    name = sheet.write_sr("bicubic", 2, create_upscaler("bicubic", 2))
    clean, on_jpeg = read_image(folder / name), read_image(folder / f"bicubic{degraded['suffix']}.png")
    assert clean.shape == on_jpeg.shape and np.abs(clean.astype(int) - on_jpeg).mean() > 0.5
    assert "degraded" not in prepare_crops(resolve_dataset(str(image_folder)), 48, [2], tmp_path / "b.json", None).info  # type: ignore[union-attr]
