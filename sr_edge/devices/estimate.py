"""A profile built from what the machine reports, for when no named profile fits.

The machine's ISA features say which precisions have native arithmetic and how many
operations a core can issue per clock; times the usable cores and the clock, that is an
estimated peak. Every figure is labelled estimated (``Hardware.estimated``, ``source =
"detected"``) with a note saying how it was derived, because the rules below assume vector
unit counts per core that no flag reports. Memory bandwidth cannot be measured cheaply, so it
is a stated per-core assumption.

Rules (operations per clock per core; an FMA counts 2):

=================  =====================================================================
fp32               AVX-512: 2 x 512-bit FMA = 64 (Xeon Scalable, Zen 5); 32 on cores with
                   one 512-bit FMA port (Intel client, Xeon Silver/Bronze) or 256-bit
                   units (Zen 4, family 25). AVX2+FMA: 2 x 256-bit = 32 (16 on Zen 1).
                   AVX: 16. SSE2: 8. Arm NEON: 2 x 128-bit = 16.
bf16               AMX-BF16: 1024 (Intel's figure for the tile unit); else AVX512_BF16
                   (VDPBF16PS, two bf16 products per fp32 lane): 2 x fp32.
int8               AMX-INT8: 2048; AVX512_VNNI: 4 x fp32; AVX-VNNI: 4 x the 256-bit fp32
                   rate; AVX2 (VPMADDUBSW, no VNNI): 2 x that rate; Arm dot product: 4 x fp32.
fp16               AMX-FP16: 1024; AVX512_FP16: 2 x fp32; Arm FP16 arithmetic: 2 x fp32.
=================  =====================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .schema import PEERS, Detect, DeviceProfile, Hardware, MachineFacts, Runtime, Workload

# The features the estimate looks at, in the order they are named to people.
X86_FEATURES: tuple[str, ...] = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
    "amx_bf16", "amx_int8", "amx_fp16",
)  # fmt: skip
ARM_FEATURES: tuple[str, ...] = ("asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve")
X86_ARCHS: tuple[str, ...] = ("x86_64", "AMD64", "amd64", "i686", "i386")

DEFAULT_CLOCK_GHZ = 2.0  # when the machine reports no clock at all (stated in the notes)
# One core streams about this much from DRAM on current DDR4/DDR5 servers and desktops
# (ci-cpu measured 26.6 GB/s read+write on one thread); a socket tops out at its channels.
BANDWIDTH_PER_CORE_GBS = 12.0
BANDWIDTH_CAP_GBS = 200.0
# The workload asked of a machine no profile describes: the generic desktop's (30 fps).
_WORKLOAD = Workload(
    resolutions=("640x360",),  # type: ignore[arg-type]  # parsed into Resolution on construction
    scales=(2, 3, 4),
    latency_budget_ms=33.3,
    memory_budget_mb=2048,
    datasets=("Set5", "Set14"),
)


@dataclass(frozen=True)
class Estimate:
    """What the machine's features imply: native precisions, peaks and how each was derived."""

    features: tuple[str, ...]  # the ISA features found, of those the rules use
    native: tuple[str, ...]  # precisions with native arithmetic here
    precisions: tuple[str, ...]  # benched by default, in bench order (fp16 is left out: see estimate())
    hardware: Hardware
    cores: int  # cores the peaks count (physical where known)
    clock_ghz: float

    def summary(self, facts: MachineFacts) -> str:
        """One line naming what was found: ``detected: <cpu>, 2 cores, <features>; native: ...; peak ...``."""
        h = self.hardware
        feats = " ".join(self.features) or "no vector extensions the rules know"
        peaks = [f"fp32 ~{h.peak_fp32_gflops:,.0f} GFLOP/s"]
        peaks += [
            f"{p} ~{v:,.0f} GFLOP/s" for p, v in (("bf16", h.peak_bf16_gflops), ("fp16", h.peak_fp16_gflops)) if v
        ]
        if h.peak_int8_gops:
            peaks.append(f"int8 ~{h.peak_int8_gops:,.0f} GOP/s")
        left_out = [p for p in self.native if p not in self.precisions]
        extra = f" (also {' '.join(left_out)}, not benched by default)" if left_out else ""
        return (
            f"detected: {facts.cpu}, {_cores_text(facts, self.cores)} at {self.clock_ghz:.2f} GHz"
            f"{'' if facts.clock_ghz else ' (assumed)'}, {feats}; "
            f"native: {' '.join(self.precisions)}{extra}; peak {', '.join(peaks)} (estimated)"
        )


def _cores_text(facts: MachineFacts, cores: int) -> str:
    if cores != facts.cores:
        return f"{cores} cores ({facts.cores} logical CPUs)"
    return f"{cores} cores"


def _is_x86(facts: MachineFacts) -> bool:
    return facts.arch in X86_ARCHS


def _amd(facts: MachineFacts) -> bool:
    return facts.vendor == "AuthenticAMD" or "amd" in facts.cpu.lower()


def _intel(facts: MachineFacts) -> bool:
    return facts.vendor == "GenuineIntel" or "intel" in facts.cpu.lower()


def _fp32_per_clock(facts: MachineFacts) -> tuple[int, str]:
    """FP32 FLOP per clock per core, and the unit assumption behind it."""
    isa, name = facts.isa, facts.cpu.lower()
    if not _is_x86(facts):
        if "asimd" in isa or facts.arch in ("aarch64", "arm64"):
            return 16, "2 x 128-bit NEON FMA assumed"
        return 8, "4 fp32 lanes x add + multiply assumed (unknown architecture)"
    if "avx512f" in isa:
        if _amd(facts) and facts.family == 25:
            return 32, "AVX-512 on 256-bit units (Zen 4)"
        if _intel(facts) and ("xeon" not in name or re.search(r"\b(silver|bronze)\b", name)):
            return 32, "1 x 512-bit FMA (Intel client / Xeon Silver-Bronze cores)"
        return 64, "2 x 512-bit FMA"
    if "avx2" in isa and "fma" in isa:
        if _amd(facts) and facts.family == 23 and facts.model is not None and facts.model < 0x30:
            return 16, "2 x 128-bit FMA (Zen 1)"
        return 32, "2 x 256-bit FMA"
    if "avx" in isa:
        return 16, "256-bit add + multiply, no FMA"
    return 8, "SSE2 128-bit add + multiply"


def estimate(facts: MachineFacts) -> Estimate:
    """Native precisions and peaks from ``facts`` (see the module docstring for the rules)."""
    isa = facts.isa
    x86 = _is_x86(facts)
    known = X86_FEATURES if x86 else ARM_FEATURES
    features = tuple(f for f in known if f in isa)
    cores = facts.physical_cores or facts.cores
    if facts.clock_ghz:
        ghz, clock_note = facts.clock_ghz, f"clock: {facts.clock_ghz:.2f} GHz from {facts.clock_source or 'the OS'}"
        if facts.clock_source == "cpu MHz":
            clock_note += " (on a VM the host's TSC rate; all-core boost may be higher)"
    else:
        ghz, clock_note = DEFAULT_CLOCK_GHZ, f"clock not reported: {DEFAULT_CLOCK_GHZ:.1f} GHz assumed"
    scale = cores * ghz
    fp32, fp32_why = _fp32_per_clock(facts)
    narrow = min(fp32, 32)  # the 256-bit rate, for the AVX2/AVX-VNNI integer paths

    def rate(per_clock: float) -> float:
        return round(per_clock * scale, 1)

    def note(precision: str, per_clock: float, why: str, unit: str = "GFLOP/s") -> str:
        op = "OP" if precision == "int8" else "FLOP"
        return (
            f"{precision}: {cores} cores x {per_clock:g} {op}/clock ({why}) x {ghz:.2f} GHz = "
            f"{rate(per_clock):,.1f} {unit}"
        )

    notes = [note("fp32", fp32, fp32_why)]
    bf16: float | None = None
    if x86 and "amx_bf16" in isa:
        bf16 = 1024
        notes.append(note("bf16", bf16, "AMX-BF16 tiles"))
    elif x86 and "avx512_bf16" in isa:
        bf16 = 2 * fp32
        notes.append(note("bf16", bf16, "AVX512_BF16 VDPBF16PS: 2 x fp32"))
    int8: float | None = None
    if x86:
        if "amx_int8" in isa:
            int8, why = 2048, "AMX-INT8 tiles"
        elif "avx512_vnni" in isa:
            int8, why = 4 * fp32, "AVX512_VNNI VPDPBUSD: 4 x fp32"
        elif "avx_vnni" in isa:
            int8, why = 4 * narrow, "AVX-VNNI: 4 x the 256-bit fp32 rate"
        elif "avx512bw" in isa:
            int8, why = 2 * fp32, "AVX-512BW VPMADDUBSW, no VNNI: 2 x fp32"
        elif "avx2" in isa:
            int8, why = 2 * narrow, "AVX2 VPMADDUBSW, no VNNI: 2 x fp32"
    elif "asimddp" in isa:
        int8, why = 4 * fp32, "Arm SDOT: 4 x fp32"
    if int8:
        notes.append(note("int8", int8, why, "GOP/s"))
    fp16: float | None = None
    if x86 and "amx_fp16" in isa:
        fp16, why = 1024, "AMX-FP16 tiles"
    elif x86 and "avx512_fp16" in isa:
        fp16, why = 2 * fp32, "AVX512_FP16: 2 x fp32"
    elif not x86 and "asimdhp" in isa:
        fp16, why = 2 * fp32, "Arm FP16 arithmetic: 2 x fp32"
    if fp16:
        # The profile's precisions apply to every backend it lists, and ONNX Runtime's CPU
        # provider runs an fp16 graph through fp32 kernels and casts on x86: a default fp16
        # row would measure conversions, not fp16 arithmetic. OpenVINO's can be asked for.
        notes.append(
            note("fp16", fp16, why)
            + "; not benched by default (ONNX Runtime's CPU kernels are fp32): --precision fp16 measures it"
        )
    bandwidth = round(min(BANDWIDTH_PER_CORE_GBS * cores, BANDWIDTH_CAP_GBS), 1)
    notes.append(
        f"memory bandwidth: not measured; {BANDWIDTH_PER_CORE_GBS:g} GB/s per core assumed "
        f"(at most {BANDWIDTH_CAP_GBS:g}) = {bandwidth:g} GB/s"
    )
    notes.append(clock_note)
    if cores != facts.cores:
        notes.append(f"{cores} physical cores among {facts.cores} usable logical CPUs (SMT siblings share units)")
    notes.append("vector units per core are assumed from the ISA and vendor, not measured")
    # bf16 on x86 only: OpenVINO's CPU plugin (the runtime that runs bf16 on a CPU) has no Arm bf16.
    precisions = ("fp32", *(("bf16",) if bf16 else ()), *(("int8",) if int8 else ()))
    native = ("fp32", *(("bf16",) if bf16 else ()), *(("fp16",) if fp16 else ()), *(("int8",) if int8 else ()))
    hardware = Hardware(
        peak_fp32_gflops=rate(fp32),
        memory_bandwidth_gbs=bandwidth,
        peak_fp16_gflops=rate(fp16) if fp16 else None,
        peak_bf16_gflops=rate(bf16) if bf16 else None,
        peak_int8_gops=rate(int8) if int8 else None,
        memory_gb=facts.memory_gb,
        estimated=True,
        notes=tuple(notes),
    )
    return Estimate(features, native, precisions, hardware, cores, ghz)


def detected_name(facts: MachineFacts) -> str:
    """A stable name for the machine-built profile (``detected-intel-xeon-2c``).

    Stable across runs on one machine class, so results files (``results-<name>.json``) and
    per-device baselines line up: the clock and memory stay out of it.
    """
    text = facts.cpu.lower()
    text = re.sub(r"\((r|tm|c)\)", " ", text)
    text = re.sub(r"@.*$", " ", text)  # the clock belongs to the figures, not to the class
    text = re.sub(r"\b(cpu|processor)\b", " ", text)
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40].strip("-")
    slug = slug or re.sub(r"[^a-z0-9]+", "-", facts.arch.lower()).strip("-") or "cpu"
    return f"detected-{slug}-{facts.cores}c"


def profile_from_machine(facts: MachineFacts) -> DeviceProfile:
    """The profile of this machine's CPU, built from ``facts`` (labelled ``source="detected"``).

    OpenVINO first: it is the runtime that uses bf16 (AMX/AVX512_BF16) and VNNI on a CPU;
    ONNX Runtime second. Its ``[detect]`` table states what was found, so a results file
    measured elsewhere says so (``device_fit``).
    """
    est = estimate(facts)
    return DeviceProfile(
        name=detected_name(facts),
        description=(
            f"built from this machine ({facts.cpu}, {_cores_text(facts, est.cores)}): no named profile fits; "
            "peaks estimated from its ISA features and clock"
        ),
        runtime=Runtime(backends=("openvino", "ort"), precisions=est.precisions, device="cpu", peers=PEERS),
        workload=_WORKLOAD,
        hardware=est.hardware,
        detect=Detect(
            arch=(facts.arch,),
            cpu=(facts.cpu,) if facts.cpu else (),
            isa=est.features,
            cores=(facts.cores, facts.cores),
        ),
        source="detected",
    )
