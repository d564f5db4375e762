"""``benchmark(profile, settings)``: every variant x backend x precision, plus the peers.

The orchestrator only; each job lives in its own module, called once per run or per row:
:mod:`~sr_edge.bench.planning` lists the rows, :mod:`~sr_edge.bench.crops` picks the box of
the visual sheet, :mod:`~sr_edge.bench.header` records provenance,
:mod:`~sr_edge.bench.execute` measures each row (first timing round, quality, crop),
:mod:`~sr_edge.bench.rounds` adds the later timing rounds and
:mod:`~sr_edge.bench.signals` guards against a swallowed Ctrl-C.
After each row the results file is rewritten atomically, so an interrupted run keeps
every finished row; ``resume=True`` continues it (rows that failed are retried).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..devices import DeviceProfile
from ..errors import SrEdgeError
from ..provenance import now_utc, write_json
from . import heap
from .crops import CropSheet, prepare_crops
from .execute import import_runtimes, run_row
from .header import results_header
from .planning import Plan, plan
from .results import Results, Row, load_results
from .rounds import another_round, rounds_done
from .settings import BenchSettings
from .signals import ctrl_c_seen

__all__ = ["benchmark", "run_row"]


class _ResultsFile:
    """The rows so far under one header, rewritten atomically on every save (kept in memory without a path)."""

    def __init__(self, path: Path | None, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.rows: list[Row] = []

    def save(self, complete: bool) -> None:
        if self.path is not None:
            self.header["updated"] = now_utc()
            self.header["complete"] = complete
            write_json(self.path, {**self.header, "rows": [r.to_json() for r in self.rows]})


def _earlier_run(plan_: Plan, out: Path | None, resume: bool) -> tuple[dict[str, Row], str]:
    """(rows to keep by id, creation time) of the run already in ``out``; none kept for a new run.

    A run is continued only when asked (``resume``) and only with the same device and
    settings; its ``ok`` and ``skipped`` rows are kept, the others are measured again.
    """
    created = now_utc()
    if out is None or not out.exists() or out.stat().st_size == 0:
        return {}, created
    if not resume:
        raise SrEdgeError(f"{out} already exists; pass --resume to continue it or choose another --out")
    earlier = load_results(out, allow_empty=True)
    if earlier.header.get("fingerprint") != plan_.fingerprint():
        raise SrEdgeError(
            f"{out} was measured with another device profile or settings; re-run without --resume into a new --out"
        )
    kept = {r.id: r for r in earlier.rows if r.status in ("ok", "skipped")}
    return kept, str(earlier.header.get("created", created))


def _first_round(
    plan_: Plan,
    file: _ResultsFile,
    kept: Mapping[str, Row],
    crops: CropSheet | None,
    interrupted: Callable[[], bool],
    progress: bool,
    on_row: Callable[[Row], None] | None,
) -> None:
    """Every row of the plan in order: kept from the earlier run, or measured now; saved after each."""
    from tqdm import tqdm

    bar = tqdm(plan_.contenders, desc="bench", unit="row", disable=None if progress else True, leave=False)
    for c in bar:
        bar.set_postfix_str(c.id, refresh=True)
        row = kept.get(c.id)
        if row is None:
            row = run_row(c, plan_, crops)
        if interrupted():
            raise KeyboardInterrupt  # swallowed by a runtime mid-row: that row is not kept
        file.rows.append(row)
        file.save(complete=False)
        if on_row is not None:
            on_row(row)


def _later_rounds(plan_: Plan, file: _ResultsFile, interrupted: Callable[[], bool], progress: bool) -> None:
    """Rounds 2.. of latency: each pass reopens the ``ok`` rows that have not had that round yet."""
    from tqdm import tqdm

    by_id = {c.id: c for c in plan_.contenders}
    rows = file.rows
    for round_no in range(2, plan_.settings.latency.rounds + 1):
        todo = [i for i, r in enumerate(rows) if r.ok and rounds_done(r) < round_no]
        desc = f"latency round {round_no}/{plan_.settings.latency.rounds}"
        for i in tqdm(todo, desc=desc, unit="row", disable=None if progress else True, leave=False):
            again = another_round(rows[i], by_id[rows[i].id], plan_)
            if interrupted():
                raise KeyboardInterrupt
            rows[i] = again
            file.save(complete=False)


def benchmark(
    profile: DeviceProfile,
    settings: BenchSettings | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = False,
    on_row: Callable[[Row], None] | None = None,
) -> Results:
    """Run the matrix for ``profile``; with ``out``, write the results file after every row.

    ``resume``: continue the run recorded in ``out`` (same device and settings), keeping
    its ``ok`` and ``skipped`` rows and retrying the others. Interrupting (Ctrl-C) leaves
    ``out`` holding every finished row with ``complete: false``.
    """
    plan_ = plan(profile, settings)
    s = plan_.settings
    out_path = Path(out) if out is not None else None
    kept, created = _earlier_run(plan_, out_path, resume)
    crops = None
    if s.crops and out_path is not None:
        crops = prepare_crops(plan_.datasets[0], s.crop_size, {c.scale for c in plan_.contenders}, out_path)
    file = _ResultsFile(out_path, results_header(plan_, created, crops.info if crops else None))
    file.save(complete=False)  # the file exists (with no rows yet) from the start of the run
    import_runtimes(plan_, kept)
    with ctrl_c_seen() as interrupted, heap.steady_heap(s.heap) as applied:
        if s.heap == "steady" and not applied:  # record what runs, not what was asked
            file.header["settings"]["heap"] = heap.describe("steady", applied)  # the fingerprint keeps the request
        _first_round(plan_, file, kept, crops, interrupted, progress, on_row)
        _later_rounds(plan_, file, interrupted, progress)
    file.save(complete=True)
    return Results({**file.header, "complete": True}, tuple(file.rows), out_path)
