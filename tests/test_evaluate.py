from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sr_edge.data import resolve_dataset, write_image
from sr_edge.errors import DatasetNotFoundError, SrEdgeError
from sr_edge.evaluate import degrade, evaluate
from sr_edge.upscale import Bicubic, NetworkUpscaler

# Bicubic row of ../shared/reference/published.md: (PSNR, SSIM) per dataset and scale.
PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299),
    ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688),
    ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027),
    ("B100", 2): (29.56, 0.8431),
    ("B100", 3): (27.21, 0.7385),
    ("B100", 4): (25.96, 0.6675),
}


@pytest.mark.parametrize(("dataset", "scale"), sorted(PUBLISHED_BICUBIC))
def test_bicubic_reproduces_published_table(shared_datasets: Path, dataset: str, scale: int) -> None:
    result = evaluate(Bicubic(scale), resolve_dataset(dataset, shared_datasets / "eval"))
    want_psnr, want_ssim = PUBLISHED_BICUBIC[(dataset, scale)]
    assert abs(result.psnr_y - want_psnr) <= 0.03, f"{dataset} x{scale}: PSNR {result.psnr_y:.3f} vs {want_psnr}"
    assert abs(result.ssim_y - want_ssim) <= 0.002, f"{dataset} x{scale}: SSIM {result.ssim_y:.4f} vs {want_ssim}"


def test_samples_dataset_is_real_photos() -> None:
    ds = resolve_dataset(None)
    assert ds.name == "samples" and len(ds) == 5
    result = evaluate(Bicubic(2), ds)
    assert 25 < result.psnr_y < 40 and len(result.images) == 5
    doc = result.to_json()
    assert set(doc) == {"model", "dataset", "scale", "psnr_y", "ssim_y", "images"}
    assert set(doc["images"][0]) == {"name", "psnr_y", "ssim_y"}


def _bicubic_tensor(x: np.ndarray) -> np.ndarray:
    """N x C x h x w -> N x C x 2h x 2w with MATLAB bicubic, as a network would return."""
    from sr_edge.data import imresize

    return imresize(x[0].transpose(1, 2, 0).astype(np.float64), 2).transpose(2, 0, 1)[None].astype(np.float32)


def test_evaluate_uses_the_upscaler_output(tmp_path: Path, photo: np.ndarray) -> None:
    write_image(tmp_path / "a.png", photo)
    ds = resolve_dataset(tmp_path)
    noise = np.random.default_rng(0)
    clean = evaluate(NetworkUpscaler("clean", 2, "rgb", _bicubic_tensor), ds)
    worse = evaluate(
        NetworkUpscaler(
            "noisy",
            2,
            "rgb",
            lambda x: _bicubic_tensor(x) + noise.normal(0, 0.05, (1, 3, *[2 * d for d in x.shape[2:]])),
        ),
        ds,
    )
    assert clean.psnr_y == pytest.approx(evaluate(Bicubic(2), ds).psnr_y, abs=0.05)
    assert worse.psnr_y < clean.psnr_y - 2


def test_evaluate_takes_a_dataset_name_folder_or_none(tmp_path: Path, photo: np.ndarray) -> None:
    write_image(tmp_path / "a.png", photo)
    by_folder = evaluate(Bicubic(2), tmp_path)
    assert by_folder.psnr_y == evaluate(Bicubic(2), resolve_dataset(tmp_path)).psnr_y
    assert evaluate(Bicubic(4), None).dataset == "samples"
    with pytest.raises(DatasetNotFoundError, match="dataset 'NoSuchSet' not found"):
        evaluate(Bicubic(2), "NoSuchSet")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        evaluate(Bicubic(2), str(tmp_path / "no" / "such"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SrEdgeError, match="holds no images") as found_but_empty:
        evaluate(Bicubic(2), str(tmp_path / "empty"))
    assert not isinstance(found_but_empty.value, DatasetNotFoundError)
    with pytest.raises(SrEdgeError, match="numpy array"):
        Bicubic(2)([[1, 2], [3, 4]])  # type: ignore[arg-type]


def test_degrade_rejects_image_smaller_than_scale() -> None:
    with pytest.raises(SrEdgeError, match="smaller than the scale"):
        degrade(np.zeros((3, 2, 3), np.uint8), 4)


def test_dataset_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SrEdgeError, match="holds no images"):
        resolve_dataset(tmp_path)


def test_dataset_hr_subfolder_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, photo: np.ndarray) -> None:
    (tmp_path / "Mine" / "HR").mkdir(parents=True)
    write_image(tmp_path / "Mine" / "HR" / "a.png", photo)
    monkeypatch.setenv("SR_EDGE_DATA", str(tmp_path))
    ds = resolve_dataset("mine")
    assert ds.name == "mine" and [f.name for f in ds.files] == ["a.png"]
    with pytest.raises(SrEdgeError, match="not found"):
        resolve_dataset("Nope")
