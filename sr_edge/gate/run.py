"""``gate(options)``: measure base and candidate in one job, interleaved, and judge every row.

One worker process per side (:mod:`sr_edge.gate.worker`), each running its side's sr-edge
code, holds every row's session open. Round after round, for each row still undecided,
the two workers take turns (base then candidate, candidate then base in the next round:
an A B B A order that cancels a steady drift), each timing ``runs`` network-only calls
while the other is idle; then the reference workload runs (:mod:`.reference`). From
``min_rounds`` on, every ``check_every`` rounds, a row whose interval is decided
(:mod:`.stats`) stops being measured; the run ends when every row is decided, at
``max_rounds``, or once ``max_seconds`` have passed.

Rows are ``variant@backend/precision`` with the variant the bundle's folder relative to its
bundles directory, matched between the sides by that name. A variant only the candidate
has is ``new`` (reported, neither pass nor fail), one only the base has is ``removed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..bundle import find_bundles, read_manifest
from ..devices import Resolution
from ..errors import SrEdgeError, one_line
from ..provenance import git_info, library_versions, machine_info, now_utc, write_json
from ..types import PRECISIONS
from .base import Side, base_side, candidate_side, repo_root
from .reference import DESCRIPTION as REFERENCE_DESCRIPTION
from .reference import GOPS as REFERENCE_GOPS
from .reference import reference_workload
from .stats import Interval, paired_ratio, spread, verdict

GATE_SCHEMA = "sr-edge-gate"
GATE_SCHEMA_VERSION = 1
BASE_CODES = ("base", "candidate")
_BOOT = "import runpy, sys; sys.path.insert(0, sys.argv[1]); runpy.run_path(sys.argv[2], run_name='__main__')"


def _positive_int(name: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SrEdgeError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class GateOptions:
    """What the gate compares and how long it may take (validated on construction)."""

    base: str  # a git ref, or a folder of bundles
    bundles: str | os.PathLike[str] | None = None  # the candidate's bundles (default: export/ of the repository)
    models: tuple[str, ...] = ()  # model names or variant folders (espcn, espcn/x2); empty = all
    scales: tuple[int, ...] = ()
    backend: str = "ort"
    precision: str | None = None  # None: each bundle's own
    device: str | None = None
    threads: int | None = None
    resolution: Resolution | str = "640x360"
    threshold: float = 0.10
    confidence: float = 0.95
    runs: int = 3  # timed runs per side per round
    min_rounds: int = 10
    max_rounds: int = 40
    check_every: int = 5
    max_seconds: float = 150.0
    base_code: str = "base"
    repo: str | os.PathLike[str] | None = None  # default: the repository holding the working folder

    def __post_init__(self) -> None:
        if not isinstance(self.base, str) or not self.base.strip():
            raise SrEdgeError("--base must name a git ref or a folder of bundles")
        if isinstance(self.resolution, str):
            try:
                object.__setattr__(self, "resolution", Resolution.parse(self.resolution, "--resolution"))
            except ValueError as e:
                raise SrEdgeError(str(e)) from None
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 5):
            raise SrEdgeError(f"threshold is a fraction above 0 (0.10 = 10% slower), got {self.threshold!r}")
        if not (isinstance(self.confidence, float) and 0.5 < self.confidence < 1):
            raise SrEdgeError(f"confidence must lie between 0.5 and 1 (e.g. 0.95), got {self.confidence!r}")
        _positive_int("runs", self.runs)
        _positive_int("min_rounds", self.min_rounds, 3)
        _positive_int("max_rounds", self.max_rounds, 3)
        _positive_int("check_every", self.check_every)
        if self.max_rounds < self.min_rounds:
            raise SrEdgeError(f"max_rounds ({self.max_rounds}) must be >= min_rounds ({self.min_rounds})")
        if not (isinstance(self.max_seconds, (int, float)) and self.max_seconds > 0):
            raise SrEdgeError(f"max_seconds must be positive, got {self.max_seconds!r}")
        if self.threads is not None:
            _positive_int("threads", self.threads)
        if self.precision is not None and self.precision not in PRECISIONS:
            raise SrEdgeError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.base_code not in BASE_CODES:
            raise SrEdgeError(f"base_code must be one of {', '.join(BASE_CODES)}, got {self.base_code!r}")
        from ..backends import get_backend

        get_backend(self.backend)  # one line for an unknown name
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "scales", tuple(self.scales))


@dataclass
class GateRow:
    """One row's measurements and verdict."""

    id: str
    variant: str
    backend: str
    precision: str
    status: str  # compared, new, removed, error
    base_sha: str | None = None
    candidate_sha: str | None = None
    base_ms: list[float] = field(default_factory=list)  # per round: the base's p50 of its turn
    candidate_ms: list[float] = field(default_factory=list)
    base_runs: list[list[float]] = field(default_factory=list)  # every timed run, per round
    candidate_runs: list[list[float]] = field(default_factory=list)
    interval: Interval | None = None
    verdict: str = ""  # pass, fail, inconclusive, new, removed, error
    message: str = ""
    decided_at: int | None = None  # the round the interval was decided at (None: ran to the end)

    @property
    def same_graph(self) -> bool:
        """True when both sides hold the very same graph file (sha256)."""
        return self.base_sha is not None and self.base_sha == self.candidate_sha

    def line(self, threshold: float) -> str:
        """One line for people."""
        tag = {"pass": "PASS", "fail": "FAIL", "inconclusive": "PASS?", "new": "NEW", "removed": "REMOVED"}
        head = f"{tag.get(self.verdict, 'ERROR'):<8}{self.id}"
        if self.interval is None:
            return f"{head}  {self.message}"
        iv = self.interval
        hi = "inf" if iv.high == float("inf") else f"{iv.high:.3f}"
        b, c = statistics.median(self.base_ms), statistics.median(self.candidate_ms)
        return (
            f"{head}  ratio {iv.ratio:.3f} [{iv.low:.3f}, {hi}]  base {b:.1f} ms, candidate {c:.1f} ms, "
            f"{iv.rounds} rounds; {self.message}"
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        iv = self.interval
        return {
            "id": self.id,
            "variant": self.variant,
            "backend": self.backend,
            "precision": self.precision,
            "status": self.status,
            "verdict": self.verdict,
            "message": self.message,
            "base_sha256": self.base_sha,
            "candidate_sha256": self.candidate_sha,
            "same_graph": self.same_graph,
            "ratio": iv.ratio if iv else None,
            "low": iv.low if iv else None,
            "high": (iv.high if iv.high != float("inf") else None) if iv else None,
            "rounds": iv.rounds if iv else 0,
            "decided_at": self.decided_at,
            "base_p50_ms": statistics.median(self.base_ms) if self.base_ms else None,
            "candidate_p50_ms": statistics.median(self.candidate_ms) if self.candidate_ms else None,
            "base_round_ms": self.base_ms,
            "candidate_round_ms": self.candidate_ms,
            "base_runs_ms": self.base_runs,
            "candidate_runs_ms": self.candidate_runs,
        }


@dataclass(frozen=True)
class GateResult:
    """The whole run: every row, the reference workload, where each side came from."""

    rows: tuple[GateRow, ...]
    header: Mapping[str, Any]
    path: Path | None = None

    @property
    def failed(self) -> tuple[GateRow, ...]:
        """The rows slower by more than the threshold, at the confidence asked."""
        return tuple(r for r in self.rows if r.verdict == "fail")

    @property
    def errors(self) -> tuple[GateRow, ...]:
        """Rows that could not be measured on a side."""
        return tuple(r for r in self.rows if r.verdict == "error")

    def to_json(self) -> dict[str, Any]:
        """The gate results file."""
        return {**self.header, "verdict": "fail" if self.failed else "pass", "rows": [r.to_json() for r in self.rows]}

    def summary(self) -> str:
        """The closing line: the verdict, the reference workload and the time taken."""
        h = self.header
        t = float(h["settings"]["threshold"])
        conf = float(h["settings"]["confidence"])
        ref = h.get("reference") or {}
        compared = [r for r in self.rows if r.status == "compared"]
        bad = len(self.failed)
        verdict_text = f"{bad} of {len(compared)} rows slower by more than {t:.0%}" if bad else (
            f"no row slower by more than {t:.0%}")  # fmt: skip
        ref_text = ""
        if ref.get("p50_ms"):
            ref_text = (
                f"; machine: reference workload {ref['p50_ms']:.1f} ms p50 ({ref['gops_per_s']:.0f} GFLOP/s), "
                f"{ref['spread']:.0%} spread across rounds"
            )
        extra = f"; {len(self.errors)} row(s) not measured" if self.errors else ""
        return f"gate: {verdict_text} (one-sided {conf:.0%}){extra}{ref_text}; {h.get('seconds', 0):.0f} s"


def _matches(filters: Sequence[str], model: str, variant: str) -> bool:
    return not filters or any(f in (model, variant) or variant.startswith(f.rstrip("/") + "/") for f in filters)


@dataclass(frozen=True)
class _Variant:
    name: str
    path: Path
    model: str
    scale: int
    precision: str
    channels: int
    sha: str | None


def _variants(root: Path, opts: GateOptions) -> tuple[dict[str, _Variant], list[str]]:
    """The bundles under ``root`` that the filters keep, by variant name; unreadable ones as lines."""
    out: dict[str, _Variant] = {}
    errors: list[str] = []
    for folder in find_bundles(root):
        name = folder.relative_to(root).as_posix()
        try:
            m = read_manifest(folder)
            v = _Variant(
                name, folder, str(m["model"]), int(m["scale"]), str(m["precision"]), int(m["channels"]),
                (m.get("files", {}).get("model.onnx") or {}).get("sha256"),
            )  # fmt: skip
        except (SrEdgeError, KeyError, TypeError, ValueError) as e:
            errors.append(f"{root}/{name}: unreadable bundle ({one_line(str(e))[:200]})")
            continue
        if _matches(opts.models, v.model, name) and (not opts.scales or v.scale in opts.scales):
            out[name] = v
    return out, errors


class _Worker:
    """A measuring process running one side's sr-edge code."""

    def __init__(self, side: Side, log: IO[str]) -> None:
        self.side = side
        self.log = log
        worker = Path(__file__).with_name("worker.py")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(side.code), str(worker)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, cwd=str(side.code), bufsize=1,
        )  # fmt: skip
        hello = self.call(cmd="hello")
        used = Path(str(hello.get("sr_edge", ""))).resolve()
        if used != (side.code / "sr_edge").resolve():
            self.close()
            raise SrEdgeError(f"the {side.label} worker imported sr-edge from {used}, not {side.code / 'sr_edge'}")

    def call(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.log.flush()
            tail = one_line(Path(self.log.name).read_text(errors="replace")[-400:]) if hasattr(self.log, "name") else ""
            raise SrEdgeError(f"the {self.side.label} measuring process stopped ({tail or 'no message'})")
        reply: dict[str, Any] = json.loads(line)
        if req.get("cmd") != "hello" and not reply.get("ok"):
            raise _RowError(str(reply.get("error", "unknown error")))
        return reply

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(cmd="quit")
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=30)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class _RowError(Exception):
    """A worker could not open or time a row."""


@contextlib.contextmanager
def _workers(base: Side, cand: Side) -> Iterator[tuple[_Worker, _Worker]]:
    with tempfile.TemporaryDirectory(prefix="sr-edge-gate-log-") as logs:
        with open(Path(logs) / "base.log", "w+") as lb, open(Path(logs) / "candidate.log", "w+") as lc:
            a = _Worker(base, lb)
            try:
                b = _Worker(cand, lc)
            except BaseException:
                a.close()
                raise
            try:
                yield a, b
            finally:
                a.close()
                b.close()


def _plan_rows(base: Mapping[str, _Variant], cand: Mapping[str, _Variant], opts: GateOptions) -> list[GateRow]:
    from ..bench.results import row_id

    rows: list[GateRow] = []
    for name in sorted(set(base) | set(cand)):
        b, c = base.get(name), cand.get(name)
        precision = opts.precision or (c or b).precision  # type: ignore[union-attr]
        rid = row_id(name, opts.backend, precision)
        row = GateRow(rid, name, opts.backend, precision, "compared", b.sha if b else None, c.sha if c else None)
        if b is None:
            row.status, row.verdict, row.message = "new", "new", "not in the base: reported, not compared"
        elif c is None:
            row.status, row.verdict, row.message = "removed", "removed", "in the base only: not compared"
        rows.append(row)
    return rows


def _open(rows: list[GateRow], sides: tuple[tuple[_Worker, Mapping[str, _Variant]], ...], opts: GateOptions) -> None:
    res = opts.resolution
    assert isinstance(res, Resolution)
    options = {"threads": opts.threads} if opts.threads and opts.backend != "tensorrt" else {}
    for row in rows:
        if row.status != "compared":
            continue
        for worker, variants in sides:
            v = variants[row.variant]
            try:
                reply = worker.call(
                    cmd="open", id=row.id, bundle=str(v.path), backend=opts.backend, precision=opts.precision,
                    device=opts.device, options=options, shape=[1, v.channels, res.height, res.width],
                )  # fmt: skip
            except _RowError as e:
                hint = ""
                if worker.side.label == "base" and worker.side.kind == "git ref" and opts.base_code == "base":
                    hint = " (the base's own code failed to open it; --base-code candidate runs it under this code)"
                row.status, row.verdict = "error", "error"
                row.message = f"{worker.side.label}: {one_line(str(e))[:300]}{hint}"
                break
            if reply.get("fallback"):
                row.status, row.verdict = "error", "error"
                row.message = f"{worker.side.label}: runs as another precision here: {reply['fallback']}"
                break


def _decide(row: GateRow, opts: GateOptions, round_no: int, final: bool) -> None:
    iv = paired_ratio(row.base_ms, row.candidate_ms, opts.confidence, seed=len(row.base_ms))
    v = verdict(iv, opts.threshold)
    if v == "inconclusive" and not final:
        return
    row.interval, row.verdict = iv, v
    row.decided_at = None if final else round_no
    limit = f"{opts.threshold:.0%}"
    row.message = {
        "fail": f"slower by more than {limit}",
        "pass": f"not slower by more than {limit}",
        "inconclusive": f"inconclusive: the interval spans the {limit} threshold; passes (more rounds would decide)",
    }[v]
    if row.same_graph and row.message and v != "pass":
        row.message += " (same graph on both sides: a code or machine effect)"


def gate(options: GateOptions | None = None, /, out: str | os.PathLike[str] | None = None, progress: bool = False,
         **fields: Any) -> GateResult:  # fmt: skip
    """Measure base and candidate interleaved on this machine; judge every row (see the module docstring).

    ``out``: write the gate results JSON there (atomically). Pass a :class:`GateOptions` or its
    fields as keywords.
    """
    opts = options if options is not None else GateOptions(**fields)
    started = time.perf_counter()
    repo = Path(opts.repo).resolve() if opts.repo is not None else repo_root(Path.cwd())
    if opts.bundles is not None:
        cand_root = Path(opts.bundles)
    elif repo is not None and (repo / "export").is_dir():
        cand_root = repo / "export"
    else:
        from ..paths import bundles_dir

        cand_root = bundles_dir()
    if not cand_root.is_dir():
        raise SrEdgeError(f"candidate bundles folder {cand_root} does not exist")
    cand_side = candidate_side(cand_root.resolve(), repo)
    cand_variants, cand_errors = _variants(cand_root, opts)
    if not cand_variants:
        raise SrEdgeError(f"no bundle under {cand_root} matches the filters; nothing to gate")
    with base_side(opts.base, cand_root, repo, opts.base_code) as base:
        base_variants, base_errors = _variants(base.bundles, opts)
        if not base_variants:
            raise SrEdgeError(f"base {opts.base}: no bundle under {base.bundles} matches the filters")
        rows = _plan_rows(base_variants, cand_variants, opts)
        reference: list[float] = []
        rounds_done = 0
        with _workers(base, cand_side) as (wa, wb):
            _open(rows, ((wa, base_variants), (wb, cand_variants)), opts)
            timed_ref = reference_workload(opts.threads)
            from tqdm import tqdm

            bar = tqdm(total=opts.max_rounds, desc="gate rounds", unit="round", disable=None if progress else True)
            for round_no in range(1, opts.max_rounds + 1):
                active = [r for r in rows if r.status == "compared" and not r.verdict]
                if not active:
                    break
                order = ((wa, "base"), (wb, "candidate")) if round_no % 2 else ((wb, "candidate"), (wa, "base"))
                for row in active:
                    for worker, which in order:
                        try:
                            ms = worker.call(cmd="time", id=row.id, runs=opts.runs)["ms"]
                        except _RowError as e:
                            row.status, row.verdict, row.message = "error", "error", f"{which}: {one_line(str(e))}"
                            break
                        (row.base_runs if which == "base" else row.candidate_runs).append([round(m, 4) for m in ms])
                        (row.base_ms if which == "base" else row.candidate_ms).append(statistics.median(ms))
                reference.append(statistics.median(timed_ref(opts.runs)))
                rounds_done = round_no
                bar.update(1)
                if round_no >= opts.min_rounds and (round_no - opts.min_rounds) % opts.check_every == 0:
                    for row in active:
                        if row.status == "compared":
                            _decide(row, opts, round_no, final=False)
                if time.perf_counter() - started > opts.max_seconds and round_no >= 3:
                    break
            bar.close()
        for row in rows:
            if row.status == "compared" and not row.verdict:
                _decide(row, opts, rounds_done, final=True)
        seconds = time.perf_counter() - started
        header = _header(opts, base, cand_side, reference, rounds_done, seconds, cand_errors + base_errors)
    result = GateResult(tuple(rows), header, Path(out) if out is not None else None)
    if out is not None:
        write_json(out, result.to_json())
    return result


def _header(
    opts: GateOptions, base: Side, cand: Side, reference: list[float], rounds: int, seconds: float, errors: list[str]
) -> dict[str, Any]:
    ref_p50 = statistics.median(reference) if reference else None
    half = len(reference) // 2
    drift = (statistics.median(reference[half:]) / statistics.median(reference[:half])) if half >= 2 else None
    return {
        "schema": GATE_SCHEMA,
        "schema_version": GATE_SCHEMA_VERSION,
        "created": now_utc(),
        "seconds": round(seconds, 2),
        "machine": machine_info(),
        "libraries": library_versions(),
        "git": git_info(),
        "base": {**base.to_json(), "describe": base.describe()},
        "candidate": {**cand.to_json(), "describe": cand.describe()},
        "settings": {
            "models": list(opts.models),
            "scales": list(opts.scales),
            "backend": opts.backend,
            "precision": opts.precision,
            "device": opts.device,
            "threads": opts.threads,
            "resolution": str(opts.resolution),
            "threshold": opts.threshold,
            "confidence": opts.confidence,
            "runs": opts.runs,
            "min_rounds": opts.min_rounds,
            "max_rounds": opts.max_rounds,
            "check_every": opts.check_every,
            "max_seconds": opts.max_seconds,
            "base_code": opts.base_code,
            "statistic": "median over paired rounds of candidate p50 / base p50; percentile bootstrap over rounds",
        },
        "rounds": rounds,
        "reference": {
            "workload": REFERENCE_DESCRIPTION,
            "p50_ms": round(ref_p50, 4) if ref_p50 else None,
            "gops_per_s": round(REFERENCE_GOPS / (ref_p50 / 1000.0), 2) if ref_p50 else None,
            "spread": round(spread(reference), 4),
            "drift": round(drift, 4) if drift else None,  # second half / first half of the run
            "round_ms": [round(v, 4) for v in reference],
        },
        "bundle_errors": errors,
    }


def load_gate(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a gate results file; one-line errors for a missing, foreign or other-version file."""
    p = Path(path)
    if not p.is_file():
        raise SrEdgeError(f"gate results file {p} does not exist")
    try:
        doc = json.loads(p.read_text(errors="replace"))
    except json.JSONDecodeError as e:
        raise SrEdgeError(f"{p}: not a JSON gate results file ({one_line(str(e))})") from None
    if not isinstance(doc, dict) or doc.get("schema") != GATE_SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise SrEdgeError(f"{p}: not an sr-edge gate results file (schema {found!r}, expected {GATE_SCHEMA!r})")
    if doc.get("schema_version") != GATE_SCHEMA_VERSION:
        raise SrEdgeError(
            f"{p}: gate results schema version {doc.get('schema_version')!r}, but this sr-edge reads version "
            f"{GATE_SCHEMA_VERSION}; re-run sr-edge gate with this version"
        )
    return doc


def result_from_json(doc: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> GateResult:
    """A :class:`GateResult` rebuilt from a gate results file's contents (:func:`load_gate`)."""
    rows = []
    for d in doc.get("rows", []):
        iv = None
        if d.get("ratio") is not None:
            high = d.get("high")
            iv = Interval(float(d["ratio"]), float(d["low"]), float(high) if high is not None else float("inf"),
                          int(d.get("rounds") or 0))  # fmt: skip
        rows.append(
            GateRow(
                d["id"], d["variant"], d["backend"], d["precision"], d["status"], d.get("base_sha256"),
                d.get("candidate_sha256"), list(d.get("base_round_ms") or []), list(d.get("candidate_round_ms") or []),
                list(d.get("base_runs_ms") or []), list(d.get("candidate_runs_ms") or []), iv, d.get("verdict", ""),
                d.get("message", ""), d.get("decided_at"),
            )
        )  # fmt: skip
    header = {k: v for k, v in doc.items() if k not in ("rows", "verdict")}
    return GateResult(tuple(rows), header, Path(path) if path is not None else None)
