"""Planning a benchmark run: the settings resolved against a device profile, as a :class:`Plan`.

The matrix, per scale of the profile that a bundle exists for (every scale when there is
no bundle): bicubic, OpenCV dnn_superres (ESPCN, FSRCNN, FSRCNN-small), then for each
bundle PyTorch eager on its parent weights (float bundles) and each deployment backend
of the profile at each of its precisions the bundle can run at (an int8 QDQ bundle runs
as int8; a float bundle at the profile's float precisions).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..data.datasets import Dataset, resolve_dataset
from ..devices import DeviceProfile, Resolution
from ..errors import DatasetNotFoundError, SrEdgeError, one_line
from . import heap
from .contenders import BicubicContender, BundleContender, Contender, OpenCVContender, options_for
from .settings import BenchSettings


@dataclass(frozen=True)
class Plan:
    """The resolved run: concrete datasets, resolutions and the contenders in order."""

    profile: DeviceProfile
    settings: BenchSettings
    datasets: tuple[Dataset, ...]
    datasets_missing: tuple[str, ...]
    resolutions: tuple[Resolution, ...]
    threads: int | None
    contenders: tuple[Contender, ...]
    bundle_errors: tuple[str, ...]

    def settings_json(self) -> dict[str, Any]:
        """The exact settings, as the results file records them."""
        s = self.settings
        return {
            "models": list(s.models),
            "bundles_dir": str(s.bundles_dir),
            "datasets": [d.name for d in self.datasets],
            "datasets_missing": list(self.datasets_missing),
            "dataset_paths": {d.name: str(d.root) for d in self.datasets},
            "resolutions": [str(r) for r in self.resolutions],
            "threads": self.threads,
            "latency": dataclasses.asdict(s.latency),
            "quality": s.quality,
            "crops": s.crops,
            "crop_size": s.crop_size,
            "opencv_dir": str(s.opencv_models_dir()),
            "heap": heap.describe(s.heap),
        }

    def fingerprint(self) -> dict[str, Any]:
        """What must match for ``resume`` to append to an earlier file."""
        device = {k: v for k, v in self.profile.to_json().items() if k != "path"}
        settings = self.settings_json()
        keep = ("datasets", "resolutions", "threads", "latency", "quality", "crop_size", "heap")
        return {"device": device, **{k: settings[k] for k in keep}}


def _datasets(names: Sequence[str], data_root: str | None, named: bool) -> tuple[tuple[Dataset, ...], tuple[str, ...]]:
    """The datasets found; a profile's missing ones are listed, one the user ``named`` is an error."""
    found, missing = [], []
    for name in names:
        try:
            found.append(resolve_dataset(name, data_root))
        except DatasetNotFoundError:  # one found but broken (no images) is an error either way
            if named:
                raise
            missing.append(name)
    if not found:  # the embedded default: sr-edge measures quality even with no dataset on disk
        found.append(resolve_dataset(None))
    return tuple(found), tuple(missing)


def _matches(filters: Sequence[str], model: str, variant: str) -> bool:
    return not filters or any(f in (model, variant) or variant.startswith(f.rstrip("/") + "/") for f in filters)


def _shape_range(datasets: Sequence[Dataset], resolutions: Sequence[Resolution], scale: int) -> Any:
    """Input bounds covering every LR image of the datasets and every frame (for engines that fix them)."""
    from PIL import Image

    from ..backends import ShapeRange

    side = max(max(r.width, r.height) for r in resolutions)
    low = 8
    for ds in datasets:
        for f in ds.files:
            with Image.open(f) as im:
                w, h = im.size
            side = max(side, -(-w // scale), -(-h // scale))
            low = min(low, w // scale, h // scale)
    first = resolutions[0]
    return ShapeRange(min=(1, max(1, low), max(1, low)), opt=(1, first.height, first.width), max=(1, side, side))


def _unreadable(errors: list[str]) -> str:
    """The bundles found but refused (a sha256 mismatch, a bad manifest), for a "no bundle" error."""
    if not errors:
        return ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"; found but unreadable: {errors[0]}{more}"


def plan(profile: DeviceProfile, settings: BenchSettings | None = None) -> Plan:
    """Resolve the settings against the profile and list the contenders, in run order."""
    from ..backends import PRECISIONS, get_backend
    from ..backends.base import precision_matches_bundle
    from ..bundle import find_bundles, read_bundle

    s = settings or BenchSettings()
    rt, wl = profile.runtime, profile.workload
    scales = tuple(s.scales or wl.scales)
    backends = tuple(s.backends or rt.backends)
    precisions = tuple(s.precisions or rt.precisions)
    peers = tuple(rt.peers if s.peers is None else s.peers)
    threads = s.threads if s.threads is not None else rt.threads
    resolutions = tuple(s.resolutions or wl.resolutions)
    names = wl.datasets if s.datasets is None else s.datasets
    datasets, missing = _datasets(names, s.data_root, named=s.datasets is not None)
    for name in backends:
        get_backend(name)  # one-line error for an unknown name
    for p in precisions:
        if p not in PRECISIONS:
            raise SrEdgeError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")

    bundles, errors = [], []
    for folder in find_bundles(s.bundles_dir):
        variant = folder.relative_to(s.bundles_dir).as_posix()
        try:
            b = read_bundle(folder)
        except SrEdgeError as e:
            errors.append(f"{variant}: {one_line(str(e))}")
            continue
        if b.scale in scales and _matches(s.models, b.model, variant):
            bundles.append((variant, b))
    if s.models and not bundles:
        raise SrEdgeError(
            f"no bundle under {s.bundles_dir} matches --models {' '.join(s.models)} at scale(s) "
            f"{', '.join(map(str, scales))}; export one with sr-edge export{_unreadable(errors)}"
        )

    torch_device = rt.device if rt.device.startswith("cuda") else "cpu"
    ranges: dict[int, Any] = {}
    contenders: list[Contender] = []
    peer_scales = sorted({b.scale for _, b in bundles}) if bundles else list(scales)
    for scale in sorted(set(scales)):
        if scale in peer_scales:
            if "bicubic" in peers:
                contenders.append(BicubicContender(scale))
            if "opencv" in peers:
                contenders.extend(OpenCVContender(n, scale, s.opencv_models_dir(), threads) for n in s.opencv_models)
        seen_sources: set[str] = set()
        for variant, b in bundles:
            if b.scale != scale:
                continue
            source = b.source
            key = str(source.get("checkpoint_sha256") or b.path)
            if "torch" in peers and b.precision != "int8" and key not in seen_sources:
                seen_sources.add(key)
                contenders.append(
                    BundleContender(
                        b.path, variant, b.model, b.family, scale, "torch", "fp32", torch_device,
                        options_for("torch", threads, None), b.manifest, peer="torch",
                    )
                )  # fmt: skip
            for backend_name in backends:
                backend = get_backend(backend_name)
                for precision in precisions:
                    try:  # the backends' own rule: int8 needs a QDQ bundle and a QDQ bundle runs as int8
                        precision_matches_bundle(backend_name, b, precision, backend.precisions)  # type: ignore[arg-type]
                    except SrEdgeError:
                        continue  # a pairing the backend or the bundle cannot run: not a row
                    needs_range = "profile" in {f.name for f in dataclasses.fields(backend.options_type)}
                    if needs_range and scale not in ranges:
                        ranges[scale] = _shape_range(datasets, resolutions, scale)
                    opts = options_for(backend_name, threads, ranges.get(scale) if needs_range else None)
                    contenders.append(
                        BundleContender(
                            b.path, variant, b.model, b.family, scale, backend_name, precision, rt.device, opts,
                            b.manifest,
                        )
                    )  # fmt: skip
    if not contenders:
        raise SrEdgeError(
            f"nothing to measure on {profile.name}: no bundle under {s.bundles_dir} at scale(s) "
            f"{', '.join(map(str, scales))} and no peers{_unreadable(errors)}"
        )
    ids = [c.id for c in contenders]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SrEdgeError(f"two rows share the id {dupes[0]!r}; give the bundles distinct folder names")
    return Plan(profile, s, datasets, missing, resolutions, threads, tuple(contenders), tuple(errors))
