"""Stage outputs cached by the hash of their inputs, written so that no kill corrupts them.

Each stage owns one folder, ``<out>/stages/<slug>/``, holding its files and ``stage.json``
(its key, its time, a summary). A stage runs in a hidden temp folder beside it and is renamed
into place only when finished, with ``stage.json`` written last inside it: a folder without a
valid ``stage.json`` is never trusted, and the temp folders a killed run leaves are swept at
the next start. A stage whose key (its settings, the keys of the stages it reads, the
sr-edge version) matches the one on disk is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SrEdgeError
from ..version import __version__

STAGE_FILE = "stage.json"
_TEMP_MARK = ".tmp-"
_OLD_MARK = ".old-"


def stage_key(slug: str, settings: Mapping[str, Any], upstream: Mapping[str, str]) -> str:
    """The hash that decides whether a stage's cached output still stands."""
    doc = {"stage": slug, "settings": settings, "upstream": dict(sorted(upstream.items())), "sr_edge": __version__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def read_stage(folder: Path) -> dict[str, Any] | None:
    """The record of a finished stage, or None (absent, half-written or foreign)."""
    try:
        doc = json.loads((folder / STAGE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("key"), str) else None


def sweep(stages_dir: Path) -> list[Path]:
    """Remove the temp and replaced folders a killed run left; returns what was removed."""
    removed = []
    if stages_dir.is_dir():
        for p in stages_dir.iterdir():
            if p.name.startswith(".") and (_TEMP_MARK in p.name or _OLD_MARK in p.name):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def temp_folder(stages_dir: Path, slug: str) -> Path:
    """A fresh hidden folder to build ``slug`` in."""
    stages_dir.mkdir(parents=True, exist_ok=True)
    tmp = stages_dir / f".{slug}{_TEMP_MARK}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def publish(tmp: Path, final: Path, record: Mapping[str, Any]) -> None:
    """Write ``stage.json`` into the finished ``tmp`` and rename it onto ``final``."""
    (tmp / STAGE_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
    if final.exists():
        old = final.with_name(f".{final.name}{_OLD_MARK}{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def check_out_folder(out: Path) -> None:
    """The run folder must be a folder of ours or new: never a user's file or foreign folder."""
    if out.exists() and not out.is_dir():
        raise SrEdgeError(f"{out} is a file; sr-edge run --out names a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "stages").is_dir() and not (out / "index.md").exists():
        raise SrEdgeError(f"{out} holds files that are not an sr-edge run; choose another --out")
