from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sr_edge.data import imresize, modcrop, read_image


def test_modcrop_keeps_top_left() -> None:
    img = np.arange(7 * 10).reshape(7, 10)
    out = modcrop(img, 3)
    assert out.shape == (6, 9)
    assert np.array_equal(out, img[:6, :9])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_constant_image_stays_constant(scale: int) -> None:
    img = np.full((24, 36, 3), 117, dtype=np.uint8)
    assert np.all(imresize(img, 1 / scale) == 117)
    assert np.all(imresize(img, scale) == 117)


def test_output_sizes_and_dtype() -> None:
    img = np.zeros((30, 45, 3), dtype=np.uint8)
    assert imresize(img, 1 / 3).shape == (10, 15, 3)
    assert imresize(img, 4).shape == (120, 180, 3)
    assert imresize(img, output_shape=(7, 9)).shape == (7, 9, 3)
    assert imresize(img.astype(np.uint16), 2).dtype == np.uint16
    assert imresize(img.astype(np.float32), 2).dtype == np.float32
    assert imresize(img.astype(np.float64), 2).dtype == np.float64


def test_linear_ramp_is_reproduced_inside() -> None:
    # Cubic convolution reproduces linear functions exactly away from the borders.
    x = np.tile(np.arange(40, dtype=np.float64), (40, 1))
    up = imresize(x, 2)
    u = (np.arange(80) + 1) / 2 + 0.5 * (1 - 1 / 2) - 1  # MATLAB's sample positions, 0-based
    assert np.allclose(up[10:-10, 8:-8], np.tile(u[8:-8], (60, 1)), atol=1e-9)


def test_downscale_matches_area_mean_on_smooth_image() -> None:
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = 100 + 50 * np.sin(xx / 15.0) * np.cos(yy / 20.0)
    small = imresize(smooth, 1 / 2)
    area = smooth.reshape(32, 2, 32, 2).mean(axis=(1, 3))
    assert np.abs(small - area)[4:-4, 4:-4].max() < 0.2


def test_rejects_empty() -> None:
    with pytest.raises(ValueError):
        imresize(np.zeros((0, 5)), 2)


@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_reproduces_canonical_lr(shared_datasets: Path, dataset: str, scale: int) -> None:
    """Our degradation vs MATLAB's own LR images: mean |diff| < 0.25 grey levels per image."""
    root = shared_datasets / "eval" / dataset
    hr_files = sorted((root / "HR").glob("*.png"))
    assert hr_files
    for hr_path in hr_files:
        hr = modcrop(read_image(hr_path), scale)
        ours = imresize(hr, 1 / scale)
        theirs = read_image(root / "LR_bicubic" / f"X{scale}" / hr_path.name)
        assert ours.shape == theirs.shape, hr_path.name
        diff = np.abs(ours.astype(np.int32) - theirs.astype(np.int32))
        assert diff.mean() < 0.25, f"{hr_path.name}: mean |diff| {diff.mean():.3f}"
