"""The CI latency gate: sides, statistics, verdicts and its one-line errors; compare's refusals.

The gate runs for real on tiny frames (48x32, one run per turn, 3 rounds) in temporary
git repositories holding copies of a shipped bundle. Its verdicts on real timings are not
asserted (a test must not depend on speed); the statistics are checked on synthetic pairs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sr_edge.bench import load_results
from sr_edge.bench.compare import compare
from sr_edge.cli import main
from sr_edge.errors import SrEdgeError
from sr_edge.gate import GATE_SCHEMA, GateOptions, gate, load_gate, paired_ratio, verdict
from sr_edge.gate.base import INSTALLED_CODE, base_side
from sr_edge.gate.inject import inject
from sr_edge.gate.reference import reference_workload
from sr_edge.paths import PROJECT_ROOT, bundles_dir
from sr_edge.roofline import graph_cost

TINY: dict[str, Any] = {"resolution": "48x32", "min_rounds": 3, "max_rounds": 3, "runs": 1}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def _repo(root: Path, with_code: bool = False) -> Path:
    """A repository: a first commit with no bundles, a second with export/espcn/x2 (and a copy of sr_edge)."""
    root.mkdir()
    _git(root, "init", "-q")
    (root / "README").write_text("a user's repository\n")
    _git(root, "add", "README")
    _git(root, "commit", "-q", "-m", "no bundles yet")
    shutil.copytree(bundles_dir() / "espcn" / "x2", root / "export" / "espcn" / "x2")
    if with_code:
        shutil.copytree(
            PROJECT_ROOT / "sr_edge", root / "sr_edge", ignore=shutil.ignore_patterns("__pycache__", "*.safetensors")
        )
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "bundles")
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _repo(tmp_path_factory.mktemp("gate") / "repo")
    # the working tree (the candidate) adds a variant the base lacks
    shutil.copytree(bundles_dir() / "fsrcnn" / "x2", root / "export" / "fsrcnn" / "x2")
    return root


def test_a_git_ref_base_is_measured_interleaved_and_new_rows_are_reported(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "gate.json"
    result = gate(base="HEAD", repo=repo, bundles=repo / "export", out=out, **TINY)
    rows = {r.id: r for r in result.rows}
    espcn, fsrcnn = rows["espcn/x2@ort/fp32"], rows["fsrcnn/x2@ort/fp32"]
    assert espcn.status == "compared" and espcn.same_graph and espcn.interval is not None
    assert len(espcn.base_ms) == len(espcn.candidate_ms) == espcn.interval.rounds >= 3
    assert espcn.verdict in ("pass", "fail", "inconclusive")
    assert fsrcnn.status == fsrcnn.verdict == "new" and fsrcnn.interval is None
    assert "not in the base" in fsrcnn.line(0.1)
    doc = load_gate(out)
    assert doc["schema"] == GATE_SCHEMA and doc["base"]["kind"] == "git ref"
    assert doc["base"]["commit"] == _git(repo, "rev-parse", "HEAD")
    assert doc["base"]["code"] == str(INSTALLED_CODE / "sr_edge")  # a user's repository: the installed sr-edge
    assert doc["reference"]["p50_ms"] > 0 and len(doc["reference"]["round_ms"]) == doc["rounds"]
    assert len(_git(repo, "worktree", "list").splitlines()) == 1  # the temporary worktree is gone


def test_the_base_runs_under_its_own_code(tmp_path: Path) -> None:
    root = _repo(tmp_path / "with-code", with_code=True)
    result = gate(base="HEAD", repo=root, bundles=root / "export", **TINY)
    base_code = str(result.header["base"]["code"])
    assert "sr-edge-gate-" in base_code and base_code.endswith("sr_edge")  # the checked-out base's package
    assert result.header["candidate"]["code"] == str(INSTALLED_CODE / "sr_edge")
    assert [r.status for r in result.rows] == ["compared"]
    with base_side("HEAD", root / "export", root, base_code="candidate") as side:
        assert side.code == INSTALLED_CODE and side.commit == _git(root, "rev-parse", "HEAD")


def test_bad_bases_are_one_line(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SrEdgeError, match="base ref 'no-such-branch' does not exist"):
        gate(base="no-such-branch", repo=repo, bundles=repo / "export", **TINY)
    with pytest.raises(SrEdgeError, match=r"has no bundles under export/"):
        gate(base="HEAD~1", repo=repo, bundles=repo / "export", **TINY)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SrEdgeError, match="holds no bundles"):
        gate(base=str(tmp_path / "empty"), repo=repo, bundles=repo / "export", **TINY)
    code = main(["gate", "--base", "no-such-branch", "--bundles", str(repo / "export"), "--resolution", "48x32"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err
    assert len(_git(repo, "worktree", "list").splitlines()) == 1


def test_a_folder_base_and_the_cli(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base"
    shutil.copytree(bundles_dir() / "espcn" / "x2", base / "espcn" / "x2")
    out = tmp_path / "g.json"
    args = ["gate", "--base", str(base), "--bundles", str(repo / "export"), "--models", "espcn", "--resolution",
            "48x32", "--runs", "1", "--min-rounds", "3", "--max-rounds", "3", "--out", str(out)]  # fmt: skip
    code = main(args)
    lines = capsys.readouterr().out.strip().splitlines()
    assert code in (0, 1) and len(lines) == 1 and "espcn/x2@ort/fp32" in lines[0] and "ratio" in lines[0]
    assert main(["gate", "--show", str(out)]) == code
    assert capsys.readouterr().out.strip().splitlines() == lines
    before = out.read_bytes()
    assert main(args) == 2  # an existing results file is not replaced without --overwrite
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "already exists; pass --overwrite" in err
    assert out.read_bytes() == before
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**json.loads(out.read_text()), "schema_version": 0}))
    assert main(["gate", "--show", str(old)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "schema version 0" in err


def test_the_interval_decides_only_past_the_threshold() -> None:
    rng = np.random.default_rng(0)
    base = 50.0 * (1 + rng.normal(0, 0.03, 30))
    noise = 1 + rng.normal(0, 0.03, 30)
    slow = paired_ratio(base.tolist(), (base * 1.25 * noise).tolist())
    assert slow.low > 1.10 and verdict(slow, 0.10) == "fail"
    same = paired_ratio(base.tolist(), (base * noise).tolist())
    assert same.low < 1.0 < same.high and verdict(same, 0.10) == "pass"
    edge = paired_ratio(base.tolist(), (base * 1.10 * noise).tolist())
    assert verdict(edge, 0.10) == "inconclusive"  # the gate fails only on evidence
    assert paired_ratio(base[:2].tolist(), base[:2].tolist()).high == float("inf")  # two pairs give no interval
    with pytest.raises(SrEdgeError, match="paired rounds"):
        paired_ratio([1.0, 2.0], [1.0])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("threshold", 0, "threshold"), ("confidence", 1.5, "confidence"), ("min_rounds", 2, "min_rounds"),
     ("backend", "nope", "unknown backend"), ("base_code", "mine", "base_code"), ("resolution", "x", "WIDTHxHEIGHT")],
)  # fmt: skip
def test_gate_options_are_validated(field: str, value: Any, match: str) -> None:
    with pytest.raises(SrEdgeError, match=match):
        GateOptions(base="HEAD", **{field: value})


def test_injected_convolutions_slow_the_graph_and_keep_its_output(tmp_path: Path) -> None:
    from sr_edge.backends import load_bundle

    src = bundles_dir() / "espcn" / "x2"
    slow = inject(src, tmp_path / "espcn" / "x2", 2)
    before, after = graph_cost(src, 40, 30, "fp32"), graph_cost(slow, 40, 30, "fp32")
    record = json.loads((slow / "manifest.json").read_text())["gate_injection"]
    c = record["channels"]
    assert after.macs - before.macs == 2 * c * c * 40 * 30
    x = np.random.default_rng(0).random((1, 1, 30, 40), dtype=np.float32)
    with load_bundle(src, "ort") as a, load_bundle(slow, "ort") as b:
        np.testing.assert_allclose(b.run(x), a.run(x), rtol=0, atol=1e-6)
    with pytest.raises(SrEdgeError, match="already exists"):
        inject(src, slow, 1)


def test_reference_workload_times_itself() -> None:
    ms = reference_workload(threads=1)(2)
    assert len(ms) == 2 and all(m > 0 for m in ms)


def _rewrite(src: Path, dst: Path, change: Any) -> Path:
    doc = json.loads(src.read_text())
    change(doc)
    dst.write_text(json.dumps(doc))
    return dst


def test_compare_refuses_a_baseline_of_other_hardware(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stored = PROJECT_ROOT / "benchmarks" / "baselines" / "ci-cpu.json"
    if not stored.is_file():
        pytest.skip("needs the committed ci-cpu baseline")
    base = load_results(stored)
    assert compare(base, base) is not None  # same CPU model and profile: compared
    other_cpu = _rewrite(stored, tmp_path / "xeon.json", lambda d: d["machine"].update(cpu="Intel(R) Xeon(R)"))
    with pytest.raises(SrEdgeError, match="was measured on 'AMD EPYC', these results on 'Intel"):
        compare(load_results(other_cpu), base)
    threads = _rewrite(stored, tmp_path / "t4.json", lambda d: d["device"]["runtime"].update(threads=4))
    with pytest.raises(SrEdgeError, match=r"another ci-cpu profile \(runtime.threads 2, now 4\)"):
        compare(load_results(threads), base)
    assert main(["compare", str(other_cpu), str(stored)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "sr-edge gate" in err
