"""``sr-edge run``: the recipe checked whole before any work, stages cached by their inputs,
and a run killed midway resumes from its finished stages with no corrupted cache entry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sr_edge.errors import SrEdgeError
from sr_edge.recipe import dry_run, load_recipe, recipe_from_dict, run_recipe
from sr_edge.recipe.schema import DEFAULT_RECIPE


@pytest.fixture()
def tiny_data(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "tiny"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 60, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def _tiny(data: Path, budgets: tuple[float, ...] = (1000.0,)) -> dict[str, object]:
    """A recipe that measures one shipped bundle on ORT fp32 on two small images: seconds."""
    return {
        "models": {"names": ["fsrcnn"], "scales": [2]},
        "bench": {
            "backends": ["ort"],
            "precisions": ["fp32"],
            "peers": ["bicubic"],
            "datasets": [str(data)],
            "resolution": "64x48",
        },
        "select": {"devices": ["detected"], "budgets_ms": list(budgets)},
    }


def _toml(doc: dict[str, object]) -> str:
    lines = []
    for table, values in doc.items():
        lines.append(f"[{table}]")
        assert isinstance(values, dict)
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def test_the_default_recipe_is_valid_and_plans_every_stage() -> None:
    recipe = load_recipe()
    assert recipe.source == "default recipe" and recipe.prune.models and recipe.quantize.models
    assert set(recipe.models.names) == {"ecbsr-m4c16", "fsrcnn", "espcn"}
    assert {"fp32", "bf16", "int8"} <= set(recipe.bench.precisions)
    assert {"ort", "openvino"} <= set(recipe.bench.backends)
    assert DEFAULT_RECIPE.is_file()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"models": {"names": ["no-such-model"]}}, "models.names: 'no-such-model' has no shipped bundle"),
        ({"bench": {"backends": ["tflite"]}}, "bench.backends: 'tflite' is not one of"),
        ({"bench": {"datasets": ["/no/such/folder"]}}, "dataset folder /no/such/folder does not exist"),
        ({"prune": {"models": ["fsrcnn"], "ratio": -0.5}}, "prune.ratio: must be in (0, 1), got -0.5"),
        ({"bench": {"warmup": 3}}, "bench.warmup: unknown key"),
        ({"colour": {}}, "colour: unknown key"),
        ({"select": {"devices": ["no-such-device"]}}, "select.devices:"),
        ({"quantize": {"models": ["espcn"]}}, "quantize.models: 'espcn' is not in models.names"),
    ],
)
def test_an_invalid_recipe_fails_before_any_work(
    change: dict[str, dict[str, object]], needle: str, tiny_data: Path, tmp_path: Path
) -> None:
    doc = _tiny(tiny_data)
    for table, values in change.items():
        doc[table] = {**doc.get(table, {}), **values}  # type: ignore[dict-item]
    path = tmp_path / "bad.toml"
    path.write_text(_toml(doc))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "sr_edge", "run", str(path), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(path) in lines[0], lines
    assert not out.exists()


def test_a_second_run_is_cached_and_a_change_reruns_only_what_depends_on_it(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = run_recipe(recipe_from_dict(_tiny(tiny_data)), out)
    assert [s.cached for s in first.stages] == [False, False, False]
    index = (out / "index.md").read_text()
    assert "selection.md" in index and "report.md" in index and "results.json" in index
    picks = json.loads((out / "stages" / "select" / "selection.json").read_text())
    assert picks and picks[0]["measured_here"] and picks[0]["selection"]["pick"] is not None

    again = run_recipe(recipe_from_dict(_tiny(tiny_data)), out)
    assert all(s.cached for s in again.stages)
    changed = recipe_from_dict(_tiny(tiny_data, budgets=(500.0, 1000.0)))
    assert [c for _, _, c in dry_run(changed, out)] == [True, True, False]
    third = run_recipe(changed, out)
    assert [s.cached for s in third.stages] == [True, True, False]


def test_sigkill_midway_resumes_from_the_finished_stages(tiny_data: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(_toml(_tiny(tiny_data)))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sr_edge", "run", str(recipe), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while not (out / "stages" / "bundles" / "stage.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # mid-bench: the bundle stage is done, the bench is not
    proc.wait()
    stages = out / "stages"
    assert not (stages / "bench" / "stage.json").exists()

    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "bundle set: cached" in done.stderr and "benchmark" in done.stderr
    assert not [p.name for p in stages.iterdir() if p.name.startswith(".")]  # the killed run's temp swept
    for slug in ("bundles", "bench", "select"):
        record = json.loads((stages / slug / "stage.json").read_text())
        assert record["key"] and "summary" in record
    assert json.loads((stages / "bench" / "results.json").read_text())["complete"] is True


def test_the_run_folder_never_takes_over_a_users_folder(tiny_data: Path, tmp_path: Path) -> None:
    theirs = tmp_path / "mine"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    with pytest.raises(SrEdgeError, match="not an sr-edge run"):
        run_recipe(recipe_from_dict(_tiny(tiny_data)), theirs)
    assert (theirs / "notes.txt").read_text() == "keep me"


def test_selection_table_says_when_nothing_fits() -> None:
    """A budget no variant meets on this machine (a slow CPU, 33 ms at 960x540) is a row that
    says so, not a crash of the last stage."""
    from sr_edge.recipe.stages import selection_markdown

    fits = {"id": "ecbsr-m4c16/x2-int8@openvino/int8", "compression": "int8", "psnr": 36.94,
            "latency_ms": 48.2, "latency_estimated": False}  # fmt: skip
    picks = [
        {"device": "here", "scale": 2, "budget_ms": 33.3, "selection": {"pick": None, "reason": "all over 33.3 ms"}},
        {"device": "here", "scale": 2, "budget_ms": 100.0, "selection": {"pick": fits, "reason": ""}},
    ]
    text = selection_markdown(picks)
    assert "| here | x2 | 33.3 | nothing fits: all over 33.3 ms | - |" in text
    assert "| here | x2 | 100 | ecbsr-m4c16/x2-int8@openvino/int8 [int8]: 36.94 dB, 48.2 ms | measured here |" in text


def test_a_pruned_run_bundle_keeps_its_parent_checkpoint_for_the_torch_peer(tiny_data: Path, tmp_path: Path) -> None:
    """The prune stage exports from its temporary folder; after publishing, the bundle set points
    the manifest at the published checkpoint, so PyTorch eager (the torch peer) loads the parent
    (the default recipe's espcn/x2-pruned50-run@torch row failed with 'not found' before)."""
    pytest.importorskip("torch")
    doc = _tiny(tiny_data)
    doc["models"] = {"names": ["espcn"], "scales": [2]}
    doc["prune"] = {"models": ["espcn"], "ratio": 0.5, "steps": 2, "batch_size": 2, "patch_size": 16}
    doc["bench"] = {**doc["bench"], "peers": ["torch"]}  # type: ignore[dict-item]
    out = tmp_path / "run"
    run_recipe(recipe_from_dict(doc), out)
    bundle = out / "stages" / "bundles" / "export" / "espcn" / "x2-pruned50-run"
    checkpoint = Path(json.loads((bundle / "manifest.json").read_text())["source"]["checkpoint"])
    assert checkpoint.is_file() and ".tmp-" not in str(checkpoint)
    rows = json.loads((out / "stages" / "bench" / "results.json").read_text())["rows"]
    ours = [r for r in rows if r["id"].startswith("espcn/x2-pruned50-run@")]
    assert {r["id"].split("@")[1] for r in ours} == {"ort/fp32", "torch/fp32"}
    assert all(r["status"] == "ok" for r in ours), [(r["id"], r.get("reason")) for r in ours]
