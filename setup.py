"""Build hook: put the shipped device profiles and bundles inside the package.

``devices/`` and ``export/`` live at the top of the checkout (the layout the project keeps),
outside the ``sr_edge`` package, so package-data alone cannot ship them. This copies
``devices/*.toml`` and every bundle ``export/<model>/x<s>[-variant]/`` (its manifest.json and
the ONNX files it lists: one, or one per runtime for int8) into
``sr_edge/_data/`` of the build (with the embedded sample photos, see below), where
:mod:`sr_edge.paths` finds them in an installed wheel; a checkout (and an editable
install) keeps reading the top-level folders.
Everything else is in pyproject.toml.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


# The embedded default images (sr_edge.data.datasets.SAMPLE_IMAGES): not committed here,
# they ship inside scikit-image; a wheel built where scikit-image is installed carries
# copies, so a core install can evaluate on them without it.
SAMPLE_IMAGES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


def _sample_images() -> list[tuple[Path, Path]]:
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = [folder / name for name in SAMPLE_IMAGES]
    return [(f, Path("samples") / f.name) for f in files] if all(f.is_file() for f in files) else []


def packaged_files() -> list[tuple[Path, Path]]:
    """(source in the checkout, destination inside the package) for every shipped data file."""
    pairs = [(p, Path("devices") / p.name) for p in sorted((ROOT / "devices").glob("*.toml"))]
    pairs += _sample_images()
    for manifest in sorted((ROOT / "export").glob("*/x*/manifest.json")):
        folder = manifest.parent
        names = ["manifest.json", *json.loads(manifest.read_text()).get("files", {"model.onnx": None})]
        if all((folder / name).is_file() for name in names):
            rel = folder.relative_to(ROOT)
            pairs += [(folder / name, rel / name) for name in names]
    return pairs


class BuildWithData(build_py):
    """build_py, plus the checkout's profiles and bundles under sr_edge/_data."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "sr_edge" / "_data"
        for src, rel in packaged_files():
            dst = target / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


setup(cmdclass={"build_py": BuildWithData})
