"""Measured results for a device: where they are found, and the profile each file carries.

A results file (``sr-edge bench``) records the device profile it was measured for and the
machine it ran on. :func:`find_results` looks where ``sr-edge bench`` and the repository put
them: ``results-<device>.json`` in the working folder (bench's default ``--out``), then
``benchmarks/reports/<device>/results*.json`` and ``benchmarks/baselines/<device>*.json``
of the checkout. A file measured on a machine that does not fit its profile (its
``device_fit`` says so) is not used for that device's figures.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..bench import Results, Row, load_results
from ..devices import (
    DeviceProfile,
    ProfileError,
    detect,
    detected_name,
    load_profile,
    probe_machine,
    profile_from_machine,
    profile_from_mapping,
)
from ..errors import SrEdgeError
from ..paths import PROJECT_ROOT, in_checkout

DETECTED = "detected"  # --device value meaning: the profile detection picks for this machine


def resolve_profile(device: str | os.PathLike[str] | DeviceProfile | None) -> DeviceProfile:
    """A profile from a name, a .toml path, a profile, ``"detected"`` or ``None`` (this machine's).

    ``None`` and ``"detected"`` choose as ``sr-edge bench`` does: the named profile that
    fits this machine, else the one built from it; the built profile's own name
    (``detected-intel-xeon-2c``) is accepted too.
    """
    if isinstance(device, DeviceProfile):
        return device
    if device is None or os.fspath(device) == DETECTED:
        best = next((d for d in detect() if d.matches), None)
        if best is None:  # detect() always ranks the machine's own profile, which always matches
            return profile_from_machine(probe_machine())
        return best.profile
    text = os.fspath(device)
    if text.startswith(f"{DETECTED}-"):
        facts = probe_machine()
        if text == detected_name(facts):
            return profile_from_machine(facts)
        raise SrEdgeError(
            f"device {text!r} is a profile built from another machine (this one is {detected_name(facts)!r}); "
            "pass its results file with --results"
        )
    return load_profile(text)


def profile_of(results: Results) -> DeviceProfile:
    """The device profile a results file was measured for, rebuilt from its header."""
    doc = dict(results.device)
    source = str(doc.get("source") or "file")
    table = {k: v for k, v in doc.items() if k in ("name", "description", "runtime", "workload", "hardware", "detect")}
    if table.get("detect") is not None:
        table["detect"] = {k: v for k, v in table["detect"].items() if v not in (None, [])}
    try:
        profile = profile_from_mapping(table)
    except (ProfileError, TypeError) as e:
        raise SrEdgeError(f"{results.path}: the device profile it records is unreadable ({e})") from None
    path = doc.get("path")
    return dataclasses.replace(profile, source=source, path=Path(path) if path else None)


def misfit(results: Results) -> bool:
    """True when the file says it was measured on a machine outside its profile's [detect] criteria."""
    fit = results.header.get("device_fit")
    return isinstance(fit, Mapping) and fit.get("matches") is False


def machine_cpu(results: Results) -> str:
    """The CPU model the results were measured on."""
    return str((results.header.get("machine") or {}).get("cpu") or "unknown CPU")


def default_result_paths(device: str) -> list[Path]:
    """Where results for ``device`` are looked for, in order (existing files only)."""
    found = [Path.cwd() / f"results-{device}.json"]
    if in_checkout():
        found += sorted((PROJECT_ROOT / "benchmarks" / "reports" / device).glob("results*.json"))
        found += sorted((PROJECT_ROOT / "benchmarks" / "baselines").glob(f"{device}*.json"))
    return [p for p in dict.fromkeys(found) if p.is_file()]


def committed_results() -> list[Path]:
    """Every results file the checkout commits (reports and baselines): the calibration machines."""
    if not in_checkout():
        return []
    root = PROJECT_ROOT / "benchmarks"
    return sorted({*root.glob("reports/*/results*.json"), *root.glob("baselines/*.json")})


def load_many(paths: Iterable[str | os.PathLike[str]]) -> list[Results]:
    """Each results file, loaded (one-line errors for a missing, foreign or other-version file)."""
    return [load_results(p) for p in paths]


def find_results(profile: DeviceProfile, given: Sequence[Results] = ()) -> list[Results]:
    """The results that hold measurements of ``profile``: those ``given`` for it, else the default places.

    Files measured on a machine that does not fit the profile are left out.
    """
    mine = [r for r in given if r.device.get("name") == profile.name]
    if not given:
        mine = []
        for p in default_result_paths(profile.name):
            try:
                r = load_results(p)
            except SrEdgeError:
                continue  # a stray file in the working folder must not break selection
            if r.device.get("name") == profile.name:
                mine.append(r)
    # newest measurement first: where two files hold a row, the later run's figures are used
    mine.sort(key=lambda r: str(r.header.get("updated") or r.header.get("created") or ""), reverse=True)
    return [r for r in mine if not misfit(r)]


def measured_rows(results: Sequence[Results], scale: int) -> dict[str, tuple[Row, Results]]:
    """The deployable rows (no peers) at ``scale``, by row id; the first file holding a row wins."""
    out: dict[str, tuple[Row, Results]] = {}
    for res in results:
        for row in res.rows:
            if row.peer is None and row.scale == scale and row.id not in out:
                out[row.id] = (row, res)
    return out


def bundle_sha(row: Row) -> str | None:
    """The sha256 of the graph a row measured (None when the file does not record it)."""
    info: Mapping[str, Any] = row.bundle or {}
    sha = info.get("onnx_sha256")
    return str(sha) if sha else None
