"""Shared fixtures: the ../shared datasets (skipped where absent) and small images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = PROJECT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not (SHARED_DATASETS / "eval").is_dir():
        pytest.skip(f"needs the standard SR datasets at {SHARED_DATASETS} (absent in a user's fresh clone)")
    return SHARED_DATASETS


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def photo() -> np.ndarray:
    """A real photo (a crop of scikit-image's astronaut), uint8 RGB."""
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut()[100:196, 150:270])
