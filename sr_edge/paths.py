"""Where sr-edge finds its own files: one definition of the project root and of packaged data.

In a checkout, ``devices/`` and ``export/`` beside the package are used. An installed wheel
carries copies of both inside the package (``sr_edge/_data/devices``, ``sr_edge/_data/export``,
put there by the build, see ``setup.py``), so ``pip install sr-edge`` can run the shipped
bundles and profiles with no checkout. A user's own folders always come first.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The checkout's root (where pyproject.toml lives); in an installed wheel this is
# site-packages, which holds no devices/ or export/.
PROJECT_ROOT = PACKAGE_DIR.parent
PACKAGED_DATA = PACKAGE_DIR / "_data"
WEIGHTS_DIR = PACKAGE_DIR / "weights"


def in_checkout() -> bool:
    """True when running from a source checkout (not an installed wheel)."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "sr_edge").is_dir()


def data_dir(name: str) -> Path:
    """The project's ``name`` folder (``devices`` or ``export``): the checkout's, else the packaged copy."""
    checkout = PROJECT_ROOT / name
    if in_checkout() and checkout.is_dir():
        return checkout
    return PACKAGED_DATA / name


def devices_dir() -> Path:
    """The shipped device profiles."""
    return data_dir("devices")


def bundles_dir() -> Path:
    """The shipped bundles (``<model>/x<scale>/{model.onnx, manifest.json}``)."""
    return data_dir("export")


def shared_dir() -> Path:
    """``../shared`` beside the checkout (datasets, peers); it need not exist."""
    return PROJECT_ROOT.parent / "shared"
