"""The header of a results file: what was measured, where, with what (as pytest-benchmark records)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..devices import DeviceProfile
from ..provenance import git_info, library_versions, machine_info, now_utc
from .planning import Plan
from .results import SCHEMA, SCHEMA_VERSION

_LIBRARIES = (
    "sr-edge",
    "numpy",
    "onnx",
    "onnxruntime",
    "openvino",
    "tensorrt",
    "torch",
    "opencv-contrib-python-headless",
)


def results_header(plan_: Plan, created: str, crops: Mapping[str, Any] | None) -> dict[str, Any]:
    """The results file's header: provenance (machine, libraries, git), device, settings, crops."""
    import importlib.metadata

    libs = library_versions(_LIBRARIES)
    for dist in ("opencv-python-headless", "opencv-python", "opencv-contrib-python"):
        try:
            libs.setdefault("opencv", importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": created,
        "updated": now_utc(),
        "complete": False,
        "machine": machine_info(),
        "libraries": libs,
        "git": git_info(),
        "device": plan_.profile.to_json(),
        "device_fit": device_fit(plan_.profile),
        "settings": plan_.settings_json(),
        "fingerprint": plan_.fingerprint(),
        "bundle_errors": list(plan_.bundle_errors),
        "crops": dict(crops) if crops else None,
    }


def device_fit(profile: DeviceProfile) -> dict[str, Any] | None:
    """Whether this machine fits ``profile``'s ``[detect]`` criteria, with the reasons (None: it states none)."""
    from ..devices import detect

    if not profile.detect.specificity:
        return None
    found = detect(profiles=[profile])[0]
    return {"matches": found.matches, "reasons": list(found.reasons)}
