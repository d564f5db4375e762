"""Evaluation datasets: a folder of HR images, found by name through a search path.

A dataset is a folder holding HR images, either directly or in an ``HR/`` subfolder.
Names (``Set5``, ``Set14``, ``B100``, ``Urban100``, ``Manga109``, ``DIV2K`` or any folder
name) resolve through, in order: ``--data-root``, the ``SR_EDGE_DATA`` environment variable
(``os.pathsep``-separated), then ``../shared/datasets/eval`` beside the project checkout or
the current directory. A path to a folder works too. Without any dataset, the embedded
default ``samples`` is five photos that ship inside scikit-image (astronaut, chelsea,
coffee, motorcycle_left, rocket), so sr-edge runs with no data download.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetNotFoundError, SrEdgeError
from ..paths import PACKAGED_DATA, PROJECT_ROOT
from .io import IMAGE_SUFFIXES

DATA_ENV = "SR_EDGE_DATA"
DEFAULT_DATASET = "samples"
SAMPLE_IMAGES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
_ALIASES = {"bsd100": "B100", "bsds100": "B100"}
_HR_SUBFOLDERS = ("HR", "DIV2K_valid_HR", "DIV2K_train_HR")


@dataclass(frozen=True)
class Dataset:
    """A named, ordered list of HR image files."""

    name: str
    root: Path
    files: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.files)


def shared_root() -> Path | None:
    """``../shared/datasets`` beside the project checkout (or the cwd), if present."""
    for base in (PROJECT_ROOT, Path.cwd()):
        candidate = base.parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    return None


def check_data_root(data_root: str | os.PathLike[str] | None) -> Path | None:
    """``data_root`` as a folder, or a one-line error where it is not one (None passes)."""
    if data_root is None:
        return None
    root = Path(data_root).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise SrEdgeError(f"data root {root} {what}; --data-root names the folder that holds the dataset folders")
    return root


def search_path(data_root: str | os.PathLike[str] | None = None, split: str = "eval") -> list[Path]:
    """Folders searched for dataset names, in order (``split`` picks ``eval`` or ``train``)."""
    roots: list[Path] = []
    root = check_data_root(data_root)
    if root is not None:
        roots.append(root)
    env = os.environ.get(DATA_ENV)
    if env:
        roots.extend(Path(p) for p in env.split(os.pathsep) if p)
    shared = shared_root()
    if shared is not None:
        roots.append(shared / split)
    return roots


def list_images(folder: Path) -> tuple[Path, ...]:
    """Image files directly inside ``folder`` (or its ``HR/`` subfolder), sorted by name."""
    for sub in _HR_SUBFOLDERS:
        if (folder / sub).is_dir():
            folder = folder / sub
            break
    return tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))


def _skimage_data() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _samples() -> Dataset:
    """The five photos from scikit-image's data folder, or the copies a wheel carries
    (``setup.py`` packages them from the build machine's scikit-image)."""
    folders = [f for f in (_skimage_data(), PACKAGED_DATA / "samples") if f is not None]
    for folder in folders:
        files = tuple(folder / name for name in SAMPLE_IMAGES)
        if all(f.is_file() for f in files):
            return Dataset(DEFAULT_DATASET, folder, files)
    if folders[0] == PACKAGED_DATA / "samples":
        raise SrEdgeError(
            "the embedded default images ship inside scikit-image, which is not installed: "
            "pip install 'sr-edge[samples]' or pass --dataset with a folder of images"
        )
    raise SrEdgeError(f"scikit-image at {folders[0]} lacks the sample images {list(SAMPLE_IMAGES)}; reinstall it")


def resolve_dataset(
    name: str | os.PathLike[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    split: str = "eval",
) -> Dataset:
    """Find a dataset by name or path; ``None`` or ``"samples"`` gives the embedded default.

    ``split="train"`` searches ``../shared/datasets/train`` (T91, BSD200) instead of ``eval``.
    """
    if name is None or str(name).lower() == DEFAULT_DATASET:
        return _samples()
    text = str(name)
    canonical = _ALIASES.get(text.lower(), text)
    direct = Path(text).expanduser()
    candidates: list[Path] = []
    if direct.is_dir():
        candidates.append(direct)
    elif direct.exists():  # not DatasetNotFoundError: it exists, it is just not a folder
        raise SrEdgeError(f"dataset {text} is a file, not a folder; pass the folder that holds the images")
    elif os.sep in text or (os.altsep and os.altsep in text):
        raise DatasetNotFoundError(f"dataset folder {text} does not exist")
    roots = search_path(data_root, split)
    for root in roots:
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.is_dir() and child.name.lower() == canonical.lower():
                candidates.append(child)
    if not candidates:
        where = ", ".join(str(r) for r in roots) or "(no search path: pass --data-root or set SR_EDGE_DATA)"
        raise DatasetNotFoundError(f"dataset {text!r} not found in {where}; pass --data-root or a folder path")
    folder = candidates[0]
    files = list_images(folder)
    if not files:
        raise SrEdgeError(f"dataset folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    display = canonical if not direct.is_dir() else folder.name
    return Dataset(display, folder, files)


def resolve_datasets(names: Sequence[str] | None, data_root: str | os.PathLike[str] | None = None) -> list[Dataset]:
    """Resolve several dataset names; no names means the embedded default."""
    if not names:
        return [resolve_dataset(None, data_root)]
    return [resolve_dataset(n, data_root) for n in names]
