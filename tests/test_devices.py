"""Device profiles: every shipped profile validates; bad files fail in one line naming file and key;
detection matches named profiles first and otherwise builds the machine's own, estimated profile.

No test here depends on this machine's CPU: the machine-built profile is tested on injected
facts (a fake /proc and /sys tree, or MachineFacts made by hand).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sr_edge import devices
from sr_edge.devices import (
    DEVICES_DIR,
    DeviceProfile,
    MachineFacts,
    detect,
    estimate,
    list_profiles,
    load_profile,
    load_profile_file,
    parse_cpuinfo,
    probe_machine,
    profile_from_machine,
)
from sr_edge.devices.estimate import DEFAULT_CLOCK_GHZ
from sr_edge.devices.probe import clock_from
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
        ('name = "mydev"', 'name = "mydev"\nsource = "detected"', "source"),  # not a file's to claim
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
        ("memory_bandwidth_gbs = 10", 'memory_bandwidth_gbs = 10\nestimated = "yes"', "hardware.estimated"),
        ("memory_bandwidth_gbs = 10", "memory_bandwidth_gbs = 10\nnotes = [1]", "hardware.notes"),
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
        (facts("AMD EPYC 9B45", 64, isa="avx2 avx512f avx512_vnni avx512_bf16"), None),
        (facts("AMD Ryzen 9 7950X", 32), None),
        (facts("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", 2, isa="avx2 avx512f avx512_bf16 amx_bf16"), None),
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
    # Without a list: the named profile when one fits, else the one built from the machine.
    first = next(d for d in detect(machine) if d.matches)
    if expected:
        assert first.profile.name == expected and first.profile.source == "file"
    else:
        assert first.profile.source == "detected" and first.profile.name.startswith("detected-")
        assert first.profile.hardware.estimated and all(not r.startswith("NOT") for r in first.reasons)


def test_generic_profile_is_by_name_only() -> None:
    generic = load_profile("generic-x86-cpu")
    assert generic.detect.specificity == 0 and generic.hardware.estimated  # an assumed desktop
    assert not generic.detect.match(facts("AMD Ryzen 9 7950X", 32))[0]


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


# --- the profile built from the machine --------------------------------------------------

SPR_FLAGS = (
    "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl "
    "avx_vnni avx512_bf16 avx512vbmi avx512_vnni avx512_fp16 amx_bf16 amx_tile amx_int8"
)
ZEN3_FLAGS = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes"


def cpuinfo(name: str, flags: str, cpus: int = 2, vendor: str = "GenuineIntel", family: int = 6,
            mhz: float = 2600.0) -> str:  # fmt: skip
    entry = (
        "processor\t: {n}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 143\n"
        "model name\t: {name}\ncpu MHz\t\t: {mhz:.3f}\nflags\t\t: {flags}\n\n"
    )
    return "".join(
        entry.format(n=n, vendor=vendor, family=family, name=name, mhz=mhz, flags=flags) for n in range(cpus)
    )


def fake_machine(root: Path, name: str, flags: str, cpus: int = 2, smt: bool = False, **kw: object) -> Path:
    """A /proc and /sys tree as Linux lays them out (``smt``: CPUs 2k and 2k+1 share a core)."""
    (root / "proc").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text(cpuinfo(name, flags, cpus, **kw))  # type: ignore[arg-type]
    (root / "proc/meminfo").write_text("MemTotal:       16303640 kB\nMemFree:         1000000 kB\n")
    for n in range(cpus):
        topo = root / f"sys/devices/system/cpu/cpu{n}/topology"
        topo.mkdir(parents=True)
        (topo / "core_id").write_text(f"{n // 2 if smt else n}\n")
        (topo / "physical_package_id").write_text("0\n")
    return root


def spr(cores: int = 2, **changes: object) -> MachineFacts:
    base = MachineFacts(
        "x86_64", "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", cores, frozenset(SPR_FLAGS.split()), None, (),
        vendor="GenuineIntel", family=6, model=143, physical_cores=cores, clock_ghz=2.7, clock_source="CPU name",
        memory_gb=15.5,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def zen3(cores: int = 2) -> MachineFacts:
    return MachineFacts(
        "x86_64", "AMD EPYC 7B13", cores, frozenset(ZEN3_FLAGS.split()), None, (),
        vendor="AuthenticAMD", family=25, model=1, physical_cores=cores, clock_ghz=2.45, clock_source="cpu MHz",
    )  # fmt: skip


def test_probe_reads_a_fake_machine(tmp_path: Path) -> None:
    root = fake_machine(tmp_path, "Intel(R) Xeon(R) Processor", SPR_FLAGS, cpus=4, smt=True)
    f = probe_machine(root, cpus={0, 1, 2, 3}, arch="x86_64")
    assert (f.cpu, f.cores, f.physical_cores) == ("Intel(R) Xeon(R) Processor", 4, 2)  # 2 cores with SMT
    assert (f.vendor, f.family, f.model) == ("GenuineIntel", 6, 143)
    assert {"avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni"} <= f.isa and f.board is None and f.gpus == ()
    assert (f.clock_ghz, f.clock_source) == (2.6, "cpu MHz") and f.memory_gb == pytest.approx(15.5, abs=0.1)
    # Only the CPUs this process may use count (a taskset or a container's cpuset).
    assert probe_machine(root, cpus={0}, arch="x86_64").cores == 1


def test_clock_prefers_steady_sources(tmp_path: Path) -> None:
    named = parse_cpuinfo(cpuinfo("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "avx2 fma", mhz=3191.4))
    assert named.mhz == pytest.approx(3191.4) and named.flags == {"avx2", "fma"}
    assert clock_from(named.model_name, None, named.mhz) == (2.0, "CPU name")
    assert clock_from("AMD Ryzen 9 7950X", "5881000\n", 3012.7) == (5.88, "cpufreq max")
    assert clock_from("AMD EPYC", None, 2449.99) == (2.4, "cpu MHz")
    assert clock_from(None, None, None) == (None, "")
    f = dataclasses.replace(zen3(), clock_ghz=None, clock_source="")
    assert estimate(f).clock_ghz == DEFAULT_CLOCK_GHZ
    assert any("clock not reported" in n for n in estimate(f).hardware.notes)


def test_sapphire_rapids_profile_has_native_bf16_and_estimated_peaks() -> None:
    f = spr()
    p = profile_from_machine(f)
    assert p.source == "detected" and p.path is None and p.estimated and p.hardware.estimated
    assert p.runtime.backends[0] == "openvino" and p.runtime.precisions == ("fp32", "bf16", "int8")
    h = p.hardware
    assert h.peak_fp32_gflops == pytest.approx(2 * 64 * 2.7)  # 2 cores x 2 x 512-bit FMA x clock
    assert h.peak_bf16_gflops == pytest.approx(2 * 1024 * 2.7)  # AMX-BF16
    assert h.peak_int8_gops == pytest.approx(2 * 2048 * 2.7)  # AMX-INT8
    assert h.peak_fp16_gflops == pytest.approx(2 * 128 * 2.7) and "fp16" not in p.runtime.precisions
    assert h.memory_gb == 15.5 and h.memory_bandwidth_gbs > 0
    assert any(n.startswith("memory bandwidth: not measured") for n in h.notes)
    assert any(n.startswith("fp32: 2 cores x 64 FLOP/clock") for n in h.notes)
    # Its [detect] table states what was found, so it fits this machine class and no other.
    assert p.detect.match(f)[0] and not p.detect.match(zen3())[0]
    assert p.name == "detected-intel-xeon-platinum-8481c-2c"
    # The results file records the label (and plain JSON types: a resumed run compares them).
    doc = p.to_json()
    assert doc["source"] == "detected" and doc["hardware"]["estimated"] is True
    assert json.loads(json.dumps(doc)) == doc


@pytest.mark.parametrize(
    ("extra", "bf16"),
    [("", False), ("avx512_bf16", True), ("amx_bf16", True), ("avx512_bf16 amx_bf16", True), ("avx512_fp16", False)],
)
def test_bf16_is_native_iff_its_flag_is_present(extra: str, bf16: bool) -> None:
    flags = frozenset(f"avx2 fma avx512f avx512bw avx512_vnni {extra}".split())
    p = profile_from_machine(dataclasses.replace(spr(), isa=flags))
    assert ("bf16" in p.runtime.precisions) is bf16 and (p.hardware.peak_bf16_gflops is not None) is bf16
    assert "int8" in p.runtime.precisions  # VNNI


def test_avx2_machine_gets_no_bf16() -> None:
    f = zen3(4)
    est = estimate(f)
    assert est.features == ("avx2", "fma") and est.native == est.precisions == ("fp32", "int8")
    h = est.hardware
    assert h.peak_fp32_gflops == pytest.approx(4 * 32 * 2.45) and h.peak_int8_gops == pytest.approx(2 * 4 * 32 * 2.45)
    assert h.peak_bf16_gflops is None and h.peak_fp16_gflops is None and h.estimated


def test_vector_unit_rules() -> None:
    per_core = {  # fp32 FLOP per clock per core
        "Intel(R) Xeon(R) Platinum 8481C": 64, "Intel(R) Xeon(R) Silver 4314": 32, "Intel(R) Core(TM) i7-1165G7": 32,
    }  # fmt: skip
    for name, flops in per_core.items():
        assert estimate(spr(1, cpu=name, clock_ghz=1.0)).hardware.peak_fp32_gflops == flops, name
    zen4 = MachineFacts("x86_64", "AMD EPYC 9654", 1, frozenset({"avx2", "fma", "avx512f", "avx512_bf16"}), None, (),
                        vendor="AuthenticAMD", family=25, clock_ghz=1.0)  # fmt: skip
    assert estimate(zen4).hardware.peak_fp32_gflops == 32 and estimate(zen4).hardware.peak_bf16_gflops == 64
    # SMT siblings share one core's units: the peak counts physical cores.
    smt = estimate(spr(4, physical_cores=2))
    assert smt.cores == 2 and smt.hardware.peak_fp32_gflops == pytest.approx(2 * 64 * 2.7)
    avx_vnni = estimate(spr(1, isa=frozenset({"avx2", "fma", "avx_vnni"}), clock_ghz=1.0))
    assert avx_vnni.hardware.peak_int8_gops == 128 and avx_vnni.precisions == ("fp32", "int8")
    base = estimate(spr(1, isa=frozenset({"sse2"}), clock_ghz=1.0))
    assert base.hardware.peak_fp32_gflops == 8 and base.precisions == ("fp32",)
    arm = estimate(MachineFacts("aarch64", "Neoverse-N1", 4, frozenset({"asimd", "asimddp", "asimdhp"}), None, (),
                                clock_ghz=2.0))  # fmt: skip
    assert arm.precisions == ("fp32", "int8") and arm.hardware.peak_fp32_gflops == 4 * 16 * 2.0


def test_detect_output_names_the_features(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from sr_edge.cli import main

    monkeypatch.setattr(devices, "probe_machine", lambda: spr())
    monkeypatch.setenv("SR_EDGE_DEVICES", "")
    assert main(["devices", "--detect"]) == 0
    out = capsys.readouterr().out
    detected = next(line for line in out.splitlines() if line.startswith("detected: "))
    assert detected.startswith("detected: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz, 2 cores at 2.70 GHz, ")
    assert "avx2 fma avx512f avx512_vnni avx_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_int8;" in detected
    assert "native: fp32 bf16 int8" in detected and "peak fp32 ~346 GFLOP/s" in detected
    assert detected.endswith("(estimated)")
    assert "profile: detected-intel-xeon-platinum-8481c-2c (built from this machine, figures ESTIMATED" in out
    assert main(["devices", "--detect", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == "detected" and doc["detected"]["estimated"] is True
    assert "amx_bf16" in doc["detected"]["features"] and doc["candidates"][0]["name"] == doc["profile"]

    # A machine a named profile fits keeps it, and still says what it found.
    ci = MachineFacts("x86_64", "AMD EPYC", 2, frozenset({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"}),
                      None, (), vendor="AuthenticAMD", family=25, clock_ghz=2.6)  # fmt: skip
    monkeypatch.setattr(devices, "probe_machine", lambda: ci)
    assert main(["devices", "--detect"]) == 0
    out = capsys.readouterr().out
    assert "\nprofile: ci-cpu (" in out and "detected: AMD EPYC, 2 cores" in out and "avx512_bf16" in out


def test_bench_plans_openvino_bf16_on_a_bf16_machine(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sr_edge.bench import BenchSettings, plan
    from sr_edge.cli import main

    s = BenchSettings(models=("espcn/x2",), peers=(), datasets=(), quality=False, crops=False)
    ids = [c.id for c in plan(profile_from_machine(spr()), s).contenders]
    assert "espcn/x2@openvino/bf16" in ids and "espcn/x2@openvino/fp32" in ids
    assert not [i for i in ids if i.endswith("/bf16") and "@openvino" not in i]  # ORT has no bf16
    assert not [i for i in plan(profile_from_machine(zen3()), s).contenders if i.precision == "bf16"]

    # `sr-edge bench` with no --device chooses the machine's own profile when none fits.
    monkeypatch.setattr(devices, "probe_machine", lambda: spr())
    monkeypatch.setenv("SR_EDGE_DEVICES", "")
    assert main(["bench", "--dry-run", "--models", "espcn/x2", "--no-peers", "--no-quality"]) == 0
    cap = capsys.readouterr()
    assert "espcn/x2@openvino/bf16" in cap.out and "device detected-intel-xeon-platinum-8481c-2c" in cap.err


def test_report_labels_estimated_peaks() -> None:
    from sr_edge.bench.report import markdown
    from sr_edge.bench.results import Results

    def report(profile: DeviceProfile) -> str:
        header = {"device": profile.to_json(), "settings": {"resolutions": ["640x360"], "datasets": ["Set5"]}}
        return markdown(Results(header, ()))

    line = next(x for x in report(profile_from_machine(spr())).splitlines() if x.startswith("- peaks "))
    assert "**estimated** built from this machine" in line and "bf16 5,530" in line
    assert "- peaks " not in report(load_profile("intel-laptop-cpu"))  # its figures are cited
