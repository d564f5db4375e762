"""Device profiles: every shipped profile validates; bad files fail in one line naming file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sr_edge.devices import (
    DEVICES_DIR,
    DeviceProfile,
    MachineFacts,
    detect,
    list_profiles,
    load_profile,
    load_profile_file,
)
from sr_edge.errors import SrEdgeError

SHIPPED = ("ci-cpu", "generic-x86-cpu", "intel-laptop-cpu", "intel-laptop-igpu", "jetson-agx-orin", "jetson-orin-nano")

GOOD = """\
# a test profile
name = "{name}"
description = "test"

[runtime]
backends = ["ort"]
precisions = ["fp32", "int8"]
device = "cpu"
threads = 2

[workload]
resolutions = ["64x48"]
scales = [2]
latency_budget_ms = 50
memory_budget_mb = 512
datasets = []

[hardware]
peak_fp32_gflops = 100.0
peak_int8_gops = 400
memory_bandwidth_gbs = 10
"""


def write_profile(folder: Path, text: str, name: str = "mydev") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text.format(name=name) if "{name}" in text else text)
    return path


def test_every_shipped_profile_loads() -> None:
    assert set(SHIPPED) <= set(list_profiles())
    for name in SHIPPED:
        p = load_profile(name)
        assert isinstance(p, DeviceProfile) and p.name == name and p.path == DEVICES_DIR / f"{name}.toml"
        assert p.runtime.backends and p.runtime.precisions and p.workload.resolutions and p.workload.scales
        assert p.hardware.peak_fp32_gflops > 0 and p.hardware.memory_bandwidth_gbs > 0
        for precision in p.runtime.precisions:  # every precision a profile runs has a peak to compare with
            assert p.hardware.peak(precision), (name, precision)
        text = p.path.read_text()
        comments = [line for line in text.splitlines() if line.startswith("#")]
        assert text.startswith("#") and len(comments) >= 5  # where the peak figures come from
        assert p.to_json()["name"] == name


def test_profile_is_frozen() -> None:
    p = load_profile("ci-cpu")
    with pytest.raises(AttributeError):
        p.name = "x"  # type: ignore[misc]


def test_good_profile_by_path(tmp_path: Path) -> None:
    p = load_profile(write_profile(tmp_path, GOOD))
    assert p.runtime.threads == 2 and str(p.workload.primary) == "64x48" and p.hardware.peak("int8") == 400.0
    assert p.hardware.peak("fp16") is None and p.workload.datasets == ()


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("threads = 2", 'threads = 2\ncolour = "red"', "runtime.colour"),
        ('name = "mydev"', 'name = "mydev"\nvendor = "x"', "vendor"),
        ("[hardware]", "[hardware]\npeak_fp8_gflops = 3", "hardware.peak_fp8_gflops"),
        ("[hardware]", "[gpu]\nx = 1\n[hardware]", "gpu"),
    ],
)
def test_unknown_key_names_file_and_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = write_profile(tmp_path, GOOD.format(name="mydev").replace(old, new))
    with pytest.raises(SrEdgeError) as e:
        load_profile_file(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and f": {key}: " in msg and "unknown key" in msg


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("threads = 2", "threads = 0", "runtime.threads"),
        ("threads = 2", 'threads = "two"', "runtime.threads"),
        ('backends = ["ort"]', 'backends = ["cuda"]', "runtime.backends"),
        ('backends = ["ort"]', "backends = []", "runtime.backends"),
        ('precisions = ["fp32", "int8"]', 'precisions = ["fp8"]', "runtime.precisions"),
        ('device = "cpu"', 'device = "tpu"', "runtime.device"),
        ('resolutions = ["64x48"]', 'resolutions = ["64*48"]', "workload.resolutions"),
        ('resolutions = ["64x48"]', 'resolutions = ["4x4"]', "workload.resolutions"),
        ("scales = [2]", "scales = [5]", "workload.scales"),
        ("latency_budget_ms = 50", "latency_budget_ms = -1", "workload.latency_budget_ms"),
        ("latency_budget_ms = 50\n", "", "workload.latency_budget_ms"),
        ("peak_fp32_gflops = 100.0", "peak_fp32_gflops = true", "hardware.peak_fp32_gflops"),
        ('name = "mydev"', 'name = "Other Name"', "name"),
    ],
)
def test_bad_value_names_file_and_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    text = GOOD.format(name="mydev")
    assert old in text
    path = write_profile(tmp_path, text.replace(old, new))
    with pytest.raises(SrEdgeError) as e:
        load_profile_file(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and f": {key}: " in msg, msg


def test_name_must_match_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text(GOOD.format(name="mydev"))
    with pytest.raises(SrEdgeError, match=r"other\.toml: name: 'mydev' differs from the file name 'other'"):
        load_profile_file(path)


def test_broken_toml_names_file(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "name = \n[runtime")
    with pytest.raises(SrEdgeError, match=r"mydev\.toml: not valid TOML"):
        load_profile_file(path)


def test_unknown_device_lists_known() -> None:
    with pytest.raises(SrEdgeError, match=r"unknown device 'no-such'; known devices: ci-cpu, "):
        load_profile("no-such")


def test_search_path_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_profile(tmp_path, GOOD, name="lab-box")
    monkeypatch.setenv("SR_EDGE_DEVICES", str(tmp_path))
    assert "lab-box" in list_profiles()
    assert load_profile("lab-box").path == tmp_path / "lab-box.toml"


def facts(
    cpu: str, cores: int, arch: str = "x86_64", isa: str = "avx2 fma", board: str | None = None, gpus: tuple = ()
) -> MachineFacts:
    return MachineFacts(arch, cpu, cores, frozenset(isa.split()), board, gpus)


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (facts("AMD EPYC", 2, isa="avx2 avx512f avx512_vnni avx512_bf16"), "ci-cpu"),
        (facts("AMD EPYC 9B45", 64, isa="avx2 avx512f avx512_vnni avx512_bf16"), "generic-x86-cpu"),
        (facts("AMD Ryzen 9 7950X", 32), "generic-x86-cpu"),
        (facts("Intel(R) Core(TM) Ultra 7 155H", 22), "intel-laptop-cpu"),
        (facts("Intel(R) Core(TM) Ultra 7 155H", 22, gpus=("intel",)), "intel-laptop-igpu"),
        (facts("ARMv8 Processor rev 1 (v8l)", 6, "aarch64", "", "NVIDIA Jetson Orin Nano Developer Kit", ("nvidia",)),
         "jetson-orin-nano"),
        (facts("ARMv8 Processor", 12, "aarch64", "", "Jetson AGX Orin Developer Kit", ("nvidia",)), "jetson-agx-orin"),
        (facts("Apple M3", 8, "arm64"), None),
    ],
)  # fmt: skip
def test_detect_picks_most_specific(machine: MachineFacts, expected: str | None) -> None:
    found = detect(machine, [load_profile(n) for n in SHIPPED])
    best = next((d for d in found if d.matches), None)
    assert (best.profile.name if best else None) == expected
    if best:
        assert all(not r.startswith("NOT") for r in best.reasons)


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sr_edge", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_cli_devices_lists_and_detects() -> None:
    proc = run_cli("devices")
    assert proc.returncode == 0, proc.stderr
    for name in SHIPPED:
        assert name in proc.stdout
    proc = run_cli("devices", "--detect")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("this machine: ") and (
        "profile: " in proc.stdout or "no device profile" in proc.stdout
    )


def test_cli_bad_profile_is_one_line(tmp_path: Path) -> None:
    path = write_profile(tmp_path, GOOD.format(name="mydev").replace("threads = 2", "threads = -3"))
    for args in (("devices", path), ("bench", "--device", path)):
        proc = run_cli(*args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "runtime.threads" in lines[0] and "mydev.toml" in lines[0], proc.stderr
    proc = run_cli("bench", "--device", "atari-2600")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "unknown device" in proc.stderr
