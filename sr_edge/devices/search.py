"""Finding profiles: by name in the search folders or by path, loading and validating them,
and ranking them against a machine's facts.

Profiles are found by name in ``$SR_EDGE_DEVICES`` (``os.pathsep``-separated folders), then
in ``devices/`` of the checkout (or the copy packaged with an installed wheel), or given as
a path to a ``.toml`` file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SrEdgeError, one_line
from ..paths import devices_dir
from .schema import DeviceProfile, MachineFacts, ProfileError, profile_from_mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the backport
    import tomli as tomllib

DEVICES_DIR = devices_dir()
DEVICES_ENV = "SR_EDGE_DEVICES"


def load_profile_file(path: str | os.PathLike[str]) -> DeviceProfile:
    """Load and validate one profile file (one-line error naming the file and the key)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SrEdgeError(f"{p}: cannot read device profile ({one_line(str(e))})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SrEdgeError(f"{p}: not valid TOML ({one_line(str(e))})") from None
    try:
        return profile_from_mapping(doc, p)
    except ProfileError as e:
        raise SrEdgeError(f"{p}: {e.key}: {one_line(e.message)}") from None


def search_dirs() -> list[Path]:
    """Folders searched for profiles by name, in order."""
    dirs = [Path(p) for p in os.environ.get(DEVICES_ENV, "").split(os.pathsep) if p]
    return [*dirs, DEVICES_DIR]


def profile_paths() -> dict[str, Path]:
    """Every profile file found, by name (earlier folders win)."""
    found: dict[str, Path] = {}
    for folder in search_dirs():
        if folder.is_dir():
            for f in sorted(folder.glob("*.toml")):
                found.setdefault(f.stem, f)
    return found


def list_profiles() -> list[str]:
    """Names of the profiles found, sorted."""
    return sorted(profile_paths())


def load_profile(name_or_path: str | os.PathLike[str]) -> DeviceProfile:
    """A profile by name (``ci-cpu``) or by path to its ``.toml`` file."""
    text = os.fspath(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        if not Path(text).is_file():
            if Path(text).exists():
                raise SrEdgeError(f"device profile {text} is not a file; pass a profile's .toml file or its name")
            raise SrEdgeError(f"device profile {text} does not exist")
        return load_profile_file(text)
    paths = profile_paths()
    if text not in paths:
        have = ", ".join(sorted(paths)) or "none"
        raise SrEdgeError(f"unknown device {text!r}; known devices: {have} (or pass a path to a .toml profile)")
    return load_profile_file(paths[text])


@dataclass(frozen=True)
class Detection:
    """The outcome of matching one profile against the machine."""

    profile: DeviceProfile
    matches: bool
    reasons: tuple[str, ...]


def rank(facts: MachineFacts, profiles: Sequence[DeviceProfile]) -> list[Detection]:
    """Every profile matched against ``facts``, best first.

    Matching profiles first; among them a named (file) profile before one built from the
    machine, whatever their specificity (a built profile's ``[detect]`` states every
    criterion, yet a person's profile of the device is the better description), then the
    most specific, then by name.
    """
    results = []
    for prof in profiles:
        ok, reasons = prof.detect.match(facts)
        results.append(Detection(prof, ok, reasons))
    return sorted(
        results,
        key=lambda d: (not d.matches, d.profile.source != "file", -d.profile.detect.specificity, d.profile.name),
    )
