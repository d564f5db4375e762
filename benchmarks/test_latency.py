"""Latency regression suite: every row ``sr-edge bench`` would measure, timed by pytest-benchmark.

Run on the target (not part of ``make test``; speed is measured here, never asserted in
``tests/``)::

    pytest benchmarks/ --sr-device ci-cpu                       # table of medians
    pytest benchmarks/ --sr-device ci-cpu --benchmark-json out.json
    pytest benchmarks/ --sr-device ci-cpu --sr-baseline benchmarks/baselines/ci-cpu.json --sr-tolerance 0.1

Each case is one row of the device's matrix (same ids as the results file: a bundle on a
backend at a precision, or a peer), timed at the profile's first resolution on the
network alone (a float32 N x C x H x W tensor) where the row has one, else end to end.
With a baseline (an ``sr-edge bench`` results file for the same device), a case fails
when its median exceeds the baseline row's p50 of the same kind by more than the
tolerance; rows the baseline lacks are timed but not judged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sr_edge.bench import BenchSettings, load_results, plan
from sr_edge.bench.contenders import Contender, Deployed, NotNative
from sr_edge.bench.header import device_fit
from sr_edge.devices import DeviceProfile, detect, load_profile

HERE = Path(__file__).resolve().parent


def _profile(config: pytest.Config) -> DeviceProfile:
    name = config.getoption("--sr-device") or os.environ.get("SR_EDGE_DEVICE")
    if name:
        return load_profile(name)
    best = next((d for d in detect() if d.matches), None)
    if best is None:
        raise pytest.UsageError("no device profile fits this machine: pass --sr-device NAME")
    return best.profile


def _contenders(config: pytest.Config) -> tuple[DeviceProfile, list[Contender]]:
    profile = _profile(config)
    settings = BenchSettings(bundles_dir=Path(config.getoption("--sr-bundles")), quality=False, crops=False)
    return profile, list(plan(profile, settings).contenders)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "contender" in metafunc.fixturenames:
        _, contenders = _contenders(metafunc.config)
        metafunc.parametrize("contender", contenders, ids=[c.id for c in contenders])


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> DeviceProfile:
    return _profile(request.config)


@pytest.fixture(scope="session")
def baseline(request: pytest.FixtureRequest, profile: DeviceProfile) -> Any:
    path = request.config.getoption("--sr-baseline")
    if path == "none":
        return None
    default = HERE / "baselines" / f"{profile.name}.json"
    if path is None and not default.is_file():
        return None
    return load_results(path or default)


@pytest.fixture(scope="session")
def off_class_hint(profile: DeviceProfile) -> str:
    """Appended to a failure when this machine does not fit the profile (its baseline is other hardware)."""
    fit = device_fit(profile)
    return "" if fit is None or fit["matches"] else f" (this machine is not a {profile.name}: other hardware)"


@pytest.fixture
def deployed(contender: Contender) -> Iterator[Deployed]:
    reason = contender.skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        d = contender.open()
    except NotNative as e:  # e.g. bf16 on a CPU without it: the runtime would time fp32
        pytest.skip(str(e))
    try:
        yield d
    finally:
        d.close()


def test_latency(
    benchmark: Any,
    contender: Contender,
    deployed: Deployed,
    profile: DeviceProfile,
    baseline: Any,
    off_class_hint: str,
    request: pytest.FixtureRequest,
) -> None:
    res = profile.workload.primary
    rng = np.random.default_rng(0)
    if deployed.model_fn is not None:
        kind, fn = "model", deployed.model_fn
        arg: np.ndarray = rng.random((1, deployed.channels, res.height, res.width), dtype=np.float32)
    else:
        kind, fn = "frame", deployed.upscaler
        arg = rng.integers(0, 256, (res.height, res.width, 3), dtype=np.uint8)
    benchmark.extra_info.update({"row": contender.id, "kind": kind, "resolution": str(res)})
    out = benchmark(fn, arg)
    assert out.shape[-2 if kind == "model" else 0] == res.height * contender.scale
    if baseline is None or benchmark.stats is None:  # no baseline, or --benchmark-disable: run, not judged
        return
    row = baseline.row(contender.id)
    timing = row.latency.get(str(res)) if row is not None and row.ok else None
    stats = (timing.model if kind == "model" else timing.frame) if timing is not None else None
    if stats is None:
        return  # not in the baseline: timed, not judged
    tolerance = float(request.config.getoption("--sr-tolerance"))
    median_ms = benchmark.stats.stats.median * 1000.0
    assert median_ms <= stats.p50_ms * (1 + tolerance), (
        f"{contender.id}: {kind} median {median_ms:.2f} ms > baseline p50 {stats.p50_ms:.2f} ms + {tolerance:.0%}"
        + off_class_hint
    )
