"""Compare a results file with a baseline (a results file of the same schema): the CI gate.

Rows are matched by id (``variant@backend/precision``). For every row the baseline
measured, the check fails when the row is missing or not ``ok`` now, when its p50
latency rose by more than ``tolerance`` (relative; network time where both files have
it, frame time otherwise; every resolution both measured) or when its PSNR-Y fell by
more than ``psnr_tolerance_db`` on a dataset both measured. Faster or better rows pass.
Baselines are per device: ``benchmarks/baselines/<device>.json``.

A baseline's latencies describe the hardware it was measured on: :func:`compare` refuses,
in one line, a baseline from another CPU model or another device profile (name or runtime
table), rather than report a hardware difference as a regression or hide one. To judge a
change on whatever machine CI lends, measure both sides in the same job: ``sr-edge gate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SrEdgeError
from .results import Results, Row


@dataclass(frozen=True)
class Regression:
    """One comparison of a row with its baseline; ``regressed`` marks a failure."""

    row_id: str
    metric: str  # e.g. "model p50 640x360", "PSNR Set5", "status"
    baseline: float | None
    current: float | None
    regressed: bool
    message: str


def _latency_checks(row_id: str, base: Row, cur: Row, tolerance: float) -> list[Regression]:
    out = []
    for res, b in base.latency.items():
        c = cur.latency.get(res)
        if c is None:
            out.append(Regression(row_id, f"latency {res}", None, None, True, f"{row_id}: not measured at {res}"))
            continue
        kind, bs, cs = ("model", b.model, c.model) if b.model and c.model else ("frame", b.frame, c.frame)
        ratio = cs.p50_ms / bs.p50_ms if bs.p50_ms > 0 else 1.0
        bad = ratio > 1.0 + tolerance
        msg = f"{row_id}: {kind} p50 at {res} {bs.p50_ms:.2f} -> {cs.p50_ms:.2f} ms ({ratio - 1:+.1%})"
        out.append(Regression(row_id, f"{kind} p50 {res}", bs.p50_ms, cs.p50_ms, bad, msg))
    return out


def misfit(results: Results) -> str | None:
    """One line when ``results`` were measured on a machine that does not fit their device profile."""
    fit = results.header.get("device_fit")
    if not isinstance(fit, dict) or fit.get("matches") is not False:
        return None
    failed = [str(r)[4:] for r in fit.get("reasons", []) if str(r).startswith("NOT ")]
    name = results.device.get("name")
    return f"measured on a machine that is not a {name} ({'; '.join(failed) or 'its [detect] criteria fail'})"


_GATE_HINT = (
    "compare results from the same hardware, or gate a change with sr-edge gate --base REF "
    "(both sides measured in one job)"
)


def other_hardware(current: Results, baseline: Results) -> str | None:
    """One line when ``baseline`` was measured on another CPU model or for another profile, else None."""
    where = f"baseline {baseline.path}" if baseline.path else "the baseline"
    base_dev, cur_dev = baseline.device.get("name"), current.device.get("name")
    if base_dev != cur_dev:
        return f"{where} was measured for device {base_dev!r}, these results for {cur_dev!r}; {_GATE_HINT}"
    base_rt, cur_rt = baseline.device.get("runtime") or {}, current.device.get("runtime") or {}
    changed = sorted(k for k in set(base_rt) | set(cur_rt) if base_rt.get(k) != cur_rt.get(k))
    if changed:
        k = changed[0]
        return (
            f"{where} was measured under another {cur_dev} profile (runtime.{k} {base_rt.get(k)!r}, "
            f"now {cur_rt.get(k)!r}); {_GATE_HINT}"
        )
    base_cpu = (baseline.header.get("machine") or {}).get("cpu")
    cur_cpu = (current.header.get("machine") or {}).get("cpu")
    if base_cpu and cur_cpu and base_cpu != cur_cpu:
        return (
            f"{where} was measured on {base_cpu!r}, these results on {cur_cpu!r}: "
            f"its latencies describe other hardware; {_GATE_HINT}"
        )
    return None


def compare(
    current: Results, baseline: Results, tolerance: float = 0.10, psnr_tolerance_db: float = 0.05
) -> list[Regression]:
    """Every check of ``current`` against ``baseline`` (see the module docstring)."""
    if not 0 <= tolerance < 10:
        raise SrEdgeError(f"tolerance is a fraction (0.1 = 10%), got {tolerance!r}")
    if psnr_tolerance_db < 0:
        raise SrEdgeError(f"PSNR tolerance must be >= 0 dB, got {psnr_tolerance_db!r}")
    refusal = other_hardware(current, baseline)
    if refusal is not None:
        raise SrEdgeError(refusal)
    checks: list[Regression] = []
    for b in baseline.rows:
        if not b.ok:
            continue
        c = current.row(b.id)
        if c is None or not c.ok:
            why = "missing" if c is None else f"{c.status}: {c.reason}"
            checks.append(Regression(b.id, "status", None, None, True, f"{b.id}: measured in the baseline, now {why}"))
            continue
        checks.extend(_latency_checks(b.id, b, c, tolerance))
        for ds, bq in b.quality.items():
            cq = c.quality.get(ds)
            if cq is None:
                continue
            drop = bq.psnr_y - cq.psnr_y
            msg = f"{b.id}: PSNR-Y {ds} {bq.psnr_y:.2f} -> {cq.psnr_y:.2f} dB"
            checks.append(Regression(b.id, f"PSNR {ds}", bq.psnr_y, cq.psnr_y, drop > psnr_tolerance_db, msg))
    return checks
