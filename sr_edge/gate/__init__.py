"""A CI latency gate that survives noisy, changing machines: ``gate(base=REF)``.

A latency baseline measured last week, maybe on another CPU, cannot judge today's change.
The gate measures the base (a git ref, checked out into a temporary worktree, or a folder
of bundles) and the candidate (the working tree) in the same job on the same machine,
interleaved round by round, and compares each row's network p50 as a paired ratio with a
bootstrap interval; it fails a row only when the interval says it is slower by more than
the threshold (:mod:`.stats`). A fixed reference workload timed in every round records
how fast the machine was (:mod:`.reference`). See ``docs/ci-gate.md``.

Modules: :mod:`.run` (the orchestrator), :mod:`.base` (the two sides), :mod:`.worker`
(the measuring process, run under each side's code), :mod:`.stats`, :mod:`.reference`,
:mod:`.inject` (a measured artificial slowdown, to check the gate's power).
"""

from __future__ import annotations

from .run import (
    BASE_CODES,
    GATE_SCHEMA,
    GATE_SCHEMA_VERSION,
    GateOptions,
    GateResult,
    GateRow,
    gate,
    load_gate,
    result_from_json,
)
from .stats import Interval, paired_ratio, verdict

__all__ = [
    "BASE_CODES",
    "GATE_SCHEMA",
    "GATE_SCHEMA_VERSION",
    "GateOptions",
    "GateResult",
    "GateRow",
    "Interval",
    "gate",
    "load_gate",
    "paired_ratio",
    "result_from_json",
    "verdict",
]
