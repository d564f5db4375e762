from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sr_edge.data.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from sr_edge.errors import SrEdgeError
from sr_edge.metrics import image_quality, psnr, shave, ssim

skimage_metrics = pytest.importorskip("skimage.metrics")
skimage_color = pytest.importorskip("skimage.color")


def test_y_matches_matlab_constants() -> None:
    # MATLAB: rgb2ycbcr(im2double(uint8([255 0 0]))) -> Y = 81.481/255 (+16/255)
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    y = rgb_to_y(rgb)
    assert np.allclose(y[0], [16 + 65.481, 16 + 128.553, 16 + 24.966, 235.0, 16.0])


def test_y_agrees_with_scikit_image(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    theirs = skimage_color.rgb2ycbcr(img)[..., 0]  # same BT.601 studio-range definition
    assert np.allclose(rgb_to_y(img), theirs, atol=1e-6)


def test_grey_is_its_own_y() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    assert np.array_equal(rgb_to_y(grey), grey[..., 0].astype(np.float64))


def test_ycbcr_round_trip(rng: np.random.Generator) -> None:
    rgb = rng.random((8, 8, 3))
    assert np.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)


def test_psnr_known_value() -> None:
    a = np.zeros((10, 10))
    b = np.full((10, 10), 10.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(a, a) == math.inf


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), h=st.integers(11, 40), w=st.integers(11, 40), noise=st.floats(1, 60))
def test_psnr_ssim_agree_with_scikit_image(seed: int, h: int, w: int, noise: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 255, (h, w))
    b = np.clip(a + rng.normal(0, noise, (h, w)), 0, 255)
    ours_ssim = ssim(a, b)
    theirs_ssim = skimage_metrics.structural_similarity(
        a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ours_ssim == pytest.approx(theirs_ssim, abs=1e-9)
    assert psnr(a, b) == pytest.approx(skimage_metrics.peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)


def test_image_quality_shaves_and_uses_y(rng: np.random.Generator) -> None:
    hr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    sr = hr.copy()
    sr[:2] = 0  # damage only the border that x2 shaves
    q = image_quality(sr, hr, border=2, rgb=True)
    assert q.psnr_y == math.inf and q.ssim_y == pytest.approx(1.0) and q.psnr_rgb == math.inf
    sr[20, 20] = 0
    assert image_quality(sr, hr, border=2).psnr_y < 100


def test_shave() -> None:
    assert shave(np.zeros((10, 12)), 3).shape == (4, 6)
    assert shave(np.zeros((10, 12)), 0).shape == (10, 12)


def test_ssim_rejects_tiny_and_mismatched() -> None:
    with pytest.raises(ValueError):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)))
    with pytest.raises(ValueError):
        ssim(np.zeros((20, 20)), np.zeros((20, 21)))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_blocked_ycbcr_planes_to_image_matches_the_full_frame_formula(dtype: type) -> None:
    """The deployed colour path (row blocks, scaling folded in) equals ycbcr2rgb + round + clip
    up to float32 rounding: at most 1 level on a few integer pixels."""
    from sr_edge.data.color import ycbcr_planes_to_image

    rng = np.random.default_rng(3)
    h, w = 131, 1000  # 65-row blocks: the last one is short
    planes = rng.uniform(-0.05, 1.05, (3, h, w)).astype(np.float32)  # out of range too: clipping
    got = ycbcr_planes_to_image(
        planes[0], planes[1], planes[2], None if dtype is np.float32 else float(np.iinfo(dtype).max), np.dtype(dtype)
    )
    ref = ycbcr_to_rgb(planes.transpose(1, 2, 0).astype(np.float64))
    assert got.shape == (h, w, 3) and got.dtype == dtype
    if dtype is np.float32:
        assert np.allclose(got, np.clip(ref, 0, 1), atol=1e-6)
    else:
        peak = np.iinfo(dtype).max
        diff = np.abs(got.astype(np.int64) - np.clip(np.round(ref * peak), 0, peak).astype(np.int64))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_colour_path_is_the_same_on_any_number_of_threads(workers: int) -> None:
    """The deployed Y-model colour work split over threads (chroma planes, row shares) gives
    bit-identical frames: odd heights, more threads than planes."""
    from sr_edge.data.color import ycbcr_planes_to_image
    from sr_edge.data.resize import resize_planes_fast

    rng = np.random.default_rng(workers)
    chroma = rng.random((37, 53, 2), dtype=np.float32)
    one = resize_planes_fast(chroma, 3, workers=1)
    many = resize_planes_fast(chroma, 3, workers=workers)
    assert all(np.array_equal(a, b) for a, b in zip(one, many, strict=True))
    y = rng.random((111, 159), dtype=np.float32)
    for peak, dtype in ((255.0, np.uint8), (None, np.float32)):
        serial = ycbcr_planes_to_image(y, *one, peak, np.dtype(dtype))
        assert np.array_equal(ycbcr_planes_to_image(y, *one, peak, np.dtype(dtype), workers=workers), serial)


def test_network_upscaler_colour_threads() -> None:
    from sr_edge.upscale import NetworkUpscaler

    def run(x: np.ndarray) -> np.ndarray:
        return x.repeat(2, axis=2).repeat(2, axis=3)

    lr = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    outs = [NetworkUpscaler("nn", 2, "y", run, workers=w)(lr) for w in (1, 2)]
    assert np.array_equal(outs[0], outs[1]) and outs[0].shape == (18, 26, 3)
    with pytest.raises(SrEdgeError, match="workers must be a positive integer, got 0"):
        NetworkUpscaler("nn", 2, "y", run, workers=0)
