"""``run_recipe``: the main job, from shipped models to a recommendation per device budget.

The recipe is checked as a whole first (names, profiles, datasets, the training stack where
a step needs it); then each stage runs, or is skipped when its cached output's key still
matches (see :mod:`.cache`), with one progress line per stage and its time. The run folder
ends with ``index.md``, which links the report, the Pareto plot, the comparison sheets, the
results file, the selection and the bundles in the order a person reads them.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SrEdgeError
from .cache import check_out_folder, publish, read_stage, stage_key, sweep, temp_folder
from .schema import Recipe
from .stages import Context, Stage, find_datasets, plan_stages, read_summary, shipped_variants


@dataclass(frozen=True)
class StageStatus:
    """One stage of a run: whether it ran or came from the cache, and its time."""

    slug: str
    title: str
    cached: bool
    seconds: float


@dataclass(frozen=True)
class RunResult:
    """Where the run's outputs are, and what each stage did."""

    out: Path
    index: Path | None
    stages: tuple[StageStatus, ...]
    seconds: float


def _check(recipe: Recipe) -> tuple[Context, list[str]]:
    """Every check that can fail, before any work: a context for the stages."""
    from ..select import resolve_profile
    from ..source import require_torch, shipped_bundle

    r = recipe
    for name in r.models.names:
        missing = [f"x{s}" for s in r.models.scales if shipped_bundle(name, s) is None]
        if missing:
            raise SrEdgeError(
                f"{r.source}: models.names: {name!r} has no shipped bundle at {', '.join(missing)} "
                "(sr-edge models lists the shipped ones)"
            )
    for key, names in (("prune.models", r.prune.models), ("quantize.models", r.quantize.models)):
        for name in names:
            if name not in r.models.names:
                raise SrEdgeError(f"{r.source}: {key}: {name!r} is not in models.names")
        if names:
            require_torch(f"the recipe's {key.split('.')[0]} step")
    for device in r.select.devices:
        try:
            resolve_profile(device)
        except SrEdgeError as e:
            raise SrEdgeError(f"{r.source}: select.devices: {e}") from None
    profile = resolve_profile(None)
    datasets, train, notes = find_datasets(r)
    return Context(recipe, Path("."), datasets, train, profile), notes


def plan_run(recipe: Recipe, out: str | Path) -> tuple[Context, list[Stage], dict[str, str]]:
    """The context, the stages and each stage's key (no work done)."""
    ctx, _ = _check(recipe)
    ctx = Context(recipe, Path(out), ctx.datasets, ctx.train_data, ctx.profile)
    stages = plan_stages(ctx)
    keys: dict[str, str] = {}
    for st in stages:
        keys[st.slug] = stage_key(st.slug, st.settings, {u: keys[u] for u in st.upstream})
    return ctx, stages, keys


def _cached(ctx: Context, slug: str, key: str) -> bool:
    record = read_stage(ctx.stage_dir(slug))
    return record is not None and record.get("key") == key


def dry_run(recipe: Recipe, out: str | Path) -> list[tuple[str, str, bool]]:
    """(slug, title, cached) for every stage a run of ``recipe`` into ``out`` would take."""
    ctx, stages, keys = plan_run(recipe, out)
    return [(st.slug, st.title, _cached(ctx, st.slug, keys[st.slug])) for st in stages]


def _say(text: str) -> None:
    print(f"sr-edge run: {text}", file=sys.stderr, flush=True)


def run_recipe(recipe: Recipe, out: str | Path, force: bool = False) -> RunResult:
    """Run ``recipe`` into the folder ``out`` (cached stages are skipped unless ``force``)."""
    started = time.time()
    out = Path(out)
    check_out_folder(out)
    ctx, notes = _check(recipe)
    ctx = Context(recipe, out, ctx.datasets, ctx.train_data, ctx.profile)
    for note in notes:
        _say(note)
    stages = plan_stages(ctx)
    stages_dir = out / "stages"
    sweep(stages_dir)  # what a killed run left half-built
    keys: dict[str, str] = {}
    done: list[StageStatus] = []
    for i, st in enumerate(stages, 1):
        key = stage_key(st.slug, st.settings, {u: keys[u] for u in st.upstream})
        keys[st.slug] = key
        head = f"[{i}/{len(stages)}] {st.title}"
        if not force and _cached(ctx, st.slug, key):
            _say(f"{head}: cached")
            done.append(StageStatus(st.slug, st.title, True, 0.0))
            continue
        _say(f"{head} ...")
        t0 = time.time()
        tmp = temp_folder(stages_dir, st.slug)
        try:
            summary = st.run(ctx, tmp)
            seconds = time.time() - t0
            record = {"key": key, "title": st.title, "seconds": seconds, "summary": summary}
            publish(tmp, ctx.stage_dir(st.slug), record)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _say(f"{head}: done in {seconds:.1f} s")
        done.append(StageStatus(st.slug, st.title, False, seconds))
    index = write_index(ctx, done, time.time() - started)
    return RunResult(out, index, tuple(done), time.time() - started)


def write_index(ctx: Context, stages: list[StageStatus], seconds: float) -> Path:
    """``index.md``: the run's outputs in reading order, with each stage's time."""
    from ..provenance import atomic_path

    out = ctx.out
    bench = read_summary(ctx.stage_dir("bench"))
    select_dir = ctx.stage_dir("select")
    rel = lambda p: Path(p).relative_to(out).as_posix()  # noqa: E731
    lines = [
        "# sr-edge run",
        "",
        f"Recipe: {ctx.recipe.source}. Machine profile: {ctx.profile.name}. "
        f"Datasets: {', '.join(ctx.datasets)}. Wall time of this invocation: {seconds:.1f} s.",
        "",
        "1. [Recommendation per device and budget](" + rel(select_dir / "selection.md") + ")",
        "2. [Benchmark report](" + rel(ctx.stage_dir("bench") / bench["report"]) + ") (quality next to latency, "
        f"{bench['ok']} of {bench['rows']} rows measured)",
    ]
    if bench.get("pareto"):
        lines.append("3. [Pareto plot](" + rel(ctx.stage_dir("bench") / bench["pareto"]) + ")")
    for sheet in bench.get("sheets", []):
        lines.append("4. [Visual comparison sheet](" + rel(ctx.stage_dir("bench") / sheet) + ")")
    lines.append("5. [Results file](" + rel(ctx.stage_dir("bench") / "results.json") + ") (machine, commit, every row)")
    lines.append("6. Bundles measured: " + ", ".join(read_summary(ctx.stage_dir("bundles"))["bundles"]))
    lines += ["", "## Picks", ""]
    lines += [f"- {p}" for p in read_summary(select_dir)["picks"]]
    lines += ["", "## Stages", "", "| stage | this run | time |", "|---|---|---|"]
    for st in stages:
        recorded = read_stage(ctx.stage_dir(st.slug)) or {}
        took = f"{float(recorded.get('seconds', 0.0)):.1f} s"
        lines.append(f"| {st.title} | {'cached' if st.cached else 'ran'} | {took} |")
    path = out / "index.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def describe_shipped(recipe: Recipe) -> list[str]:
    """The shipped bundles a recipe's run measures (for ``--dry-run``)."""
    return [f"{p.parent.name}/{p.name}" for p in shipped_variants(recipe.models.names, recipe.models.scales)]


def summary_json(result: RunResult) -> dict[str, Any]:
    """Plain JSON of a finished run."""
    return {
        "out": str(result.out),
        "index": str(result.index) if result.index else None,
        "seconds": round(result.seconds, 1),
        "stages": [vars(s) for s in result.stages],
    }
