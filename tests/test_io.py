from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sr_edge.data import read_image, split_alpha, write_image
from sr_edge.errors import SrEdgeError

LOSSLESS = [".png", ".tif", ".bmp"]


@pytest.mark.parametrize("suffix", LOSSLESS)
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_8bit(tmp_path: Path, rng: np.random.Generator, suffix: str, channels: int) -> None:
    img = rng.integers(0, 256, (13, 17, channels), dtype=np.uint8)
    out = read_image(write_image(tmp_path / f"x{suffix}", img))
    assert out.dtype == np.uint8 and np.array_equal(out, img)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_round_trip_16bit_keeps_precision(tmp_path: Path, rng: np.random.Generator, suffix: str, channels: int) -> None:
    img = rng.integers(0, 65536, (9, 11, channels), dtype=np.uint16)
    out = read_image(write_image(tmp_path / f"x{suffix}", img))
    assert out.dtype == np.uint16 and np.array_equal(out, img)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_rgba_round_trip_and_split(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    img = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    out = read_image(write_image(tmp_path / f"x{suffix}", img))
    colour, alpha = split_alpha(out)
    assert np.array_equal(colour, img[..., :3]) and alpha is not None and np.array_equal(alpha, img[..., 3:])


def test_jpeg_reads_back_close(tmp_path: Path, photo: np.ndarray) -> None:
    out = read_image(write_image(tmp_path / "x.jpg", photo))
    assert out.shape == photo.shape and np.abs(out.astype(int) - photo).mean() < 3


def test_palette_png_becomes_rgb(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("P", (5, 4), color=3).save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (4, 5, 3)


@pytest.mark.parametrize(
    ("suffix", "img", "match"),
    [
        (".jpg", np.zeros((4, 4, 3), np.uint16), "16-bit"),
        (".jpg", np.zeros((4, 4, 4), np.uint8), "alpha"),
        (".gif", np.zeros((4, 4, 3), np.uint8), "unknown image suffix"),
    ],
)
def test_write_refuses_lossy_choices(tmp_path: Path, suffix: str, img: np.ndarray, match: str) -> None:
    with pytest.raises(SrEdgeError, match=match):
        write_image(tmp_path / f"x{suffix}", img)


def test_failed_write_keeps_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.jpg"
    target.write_bytes(b"precious")
    with pytest.raises(SrEdgeError):
        write_image(target, np.zeros((4, 4, 4), np.uint8))
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jpg"]


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = write_image(tmp_path / "good.png", np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = good.read_bytes()
    files = {
        "text": tmp_path / "text.png",
        "truncated": tmp_path / "truncated.png",
        "empty": tmp_path / "empty.png",
        "missing": tmp_path / "missing.png",
        "folder": tmp_path,
    }
    files["text"].write_text("this is not an image\n")
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["empty"].write_bytes(b"")
    return files


@pytest.mark.parametrize("kind", ["text", "truncated", "empty", "missing", "folder"])
def test_bad_files_give_one_line_errors(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(SrEdgeError) as info:
        read_image(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_zero_size_png(tmp_path: Path) -> None:
    from tests.helpers import zero_size_png

    with pytest.raises(SrEdgeError):
        read_image(zero_size_png(tmp_path / "zero.png"))
