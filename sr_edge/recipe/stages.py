"""The main job's stages: what each one reads, what it writes, and how.

A :class:`Stage` names its settings (what goes into its cache key besides its upstream
stages' keys) and a function that fills a fresh folder. The plan for a recipe is
prune -> quantize (each model named), then the bundle set (the shipped bundles of the
recipe's models plus what the run made), the benchmark on this machine, its report, the
selection for each device and budget, and the index that links them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundle import MANIFEST, find_bundles, read_manifest
from ..errors import DatasetNotFoundError, SrEdgeError
from ..paths import bundles_dir
from ..provenance import write_json
from .schema import Recipe

TRAIN_DATA = ("T91", "BSD200")


@dataclass(frozen=True)
class Context:
    """What every stage may read: the recipe, the run folder, resolved inputs."""

    recipe: Recipe
    out: Path
    datasets: tuple[str, ...]  # evaluation sets found here (or ("samples",))
    train_data: tuple[str, ...]  # training sets found here (or ("samples",))
    profile: Any  # this machine's DeviceProfile

    def stage_dir(self, slug: str) -> Path:
        return self.out / "stages" / slug


StageFn = Callable[[Context, Path], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    """One step: ``run(ctx, folder)`` writes its outputs into ``folder`` and returns a summary."""

    slug: str
    title: str
    settings: Mapping[str, Any]
    upstream: tuple[str, ...]
    run: StageFn


# --- compression --------------------------------------------------------------------------


def _prune(model: str, scale: int) -> StageFn:
    def run(ctx: Context, folder: Path) -> dict[str, Any]:
        from ..compress.prune import PruneConfig, prune
        from ..export import export_bundle

        p = ctx.recipe.prune
        config = PruneConfig(
            source=model,
            scale=scale,
            out=str(folder / "run"),
            ratio=p.ratio,
            distill=p.distill,
            steps=p.steps,
            batch_size=p.batch_size,
            patch_size=p.patch_size,
            data=ctx.train_data,
            data_root=ctx.recipe.data_root,
            skip_small=True,
            val_every=max(p.steps, 1),
            ckpt_every=max(p.steps, 1),
            threads=ctx.recipe.threads,
            eval_datasets=ctx.datasets[:1],
        )
        result = prune(config, progress=False)
        if result.interrupted:
            raise KeyboardInterrupt
        tag = f"x{scale}-pruned{round(p.ratio * 100)}-run"
        bundle = export_bundle(result.checkpoint, folder / "bundle" / model / tag, measure=False)
        # the manifest names the checkpoint in this temporary stage folder; the bundle set
        # points it at the published one (the torch backend loads the parent from there)
        checkpoint = str(Path(result.checkpoint).resolve().relative_to(folder.resolve()))
        return {"bundle": str(bundle.relative_to(folder)), "checkpoint": checkpoint, "record": result.record}

    return run


def _quantize(model: str, scale: int) -> StageFn:
    def run(ctx: Context, folder: Path) -> dict[str, Any]:
        from ..compress.quantize import QuantConfig, quantize

        q = ctx.recipe.quantize
        bundle = folder / "bundle" / model / f"x{scale}-int8-run"
        config = QuantConfig(
            source=model,
            scale=scale,
            mode=q.mode,
            out=str(bundle),
            run_dir=str(folder / "run"),
            calib_data=ctx.train_data,
            calib_images=q.calib_images,
            data=ctx.train_data,
            data_root=ctx.recipe.data_root,
            steps=q.steps,
            batch_size=q.batch_size,
            patch_size=q.patch_size,
            val_every=max(q.steps, 1),
            ckpt_every=max(q.steps, 1),
            threads=ctx.recipe.threads,
            eval_datasets=ctx.datasets[:1],
        )
        result = quantize(config, progress=False)
        if result.interrupted:
            raise KeyboardInterrupt
        return {"bundle": str(bundle.relative_to(folder)), "metrics": result.metrics}

    return run


# --- the bundle set, the benchmark and its report -----------------------------------------------


def shipped_variants(models: tuple[str, ...], scales: tuple[int, ...]) -> list[Path]:
    """The committed (or packaged) bundle folders of ``models`` at ``scales``: every variant."""
    found = []
    root = bundles_dir()
    for path in find_bundles(root) if root.is_dir() else []:
        model, variant = path.parent.name, path.name
        if model in models and any(variant == f"x{s}" or variant.startswith(f"x{s}-") for s in scales):
            found.append(path)
    return sorted(found)


def _bundles(ctx: Context, folder: Path) -> dict[str, Any]:
    export = folder / "export"
    copied = []
    for src in shipped_variants(ctx.recipe.models.names, ctx.recipe.models.scales):
        dst = export / src.parent.name / src.name
        shutil.copytree(src, dst)
        copied.append(f"{src.parent.name}/{src.name}")
    for slug in _compression_slugs(ctx.recipe):
        summary = read_summary(ctx.stage_dir(slug))
        src = ctx.stage_dir(slug) / summary["bundle"]
        dst = export / src.parent.name / src.name
        shutil.copytree(src, dst)
        if "checkpoint" in summary:
            doc = json.loads((dst / MANIFEST).read_text())
            doc["source"]["checkpoint"] = str(ctx.stage_dir(slug) / summary["checkpoint"])
            write_json(dst / MANIFEST, doc)
        copied.append(f"{src.parent.name}/{src.name}")
    return {"bundles": copied}


def _bench(ctx: Context, folder: Path) -> dict[str, Any]:
    from ..bench import BenchSettings, LatencyPlan, benchmark, write_report
    from ..devices import Resolution

    b = ctx.recipe.bench
    latency = LatencyPlan(warmup=1, min_runs=3, min_time_s=0.0, max_time_s=10.0, rounds=1) if b.quick else LatencyPlan()
    settings = BenchSettings(
        bundles_dir=ctx.stage_dir("bundles") / "export",
        datasets=ctx.datasets,
        data_root=ctx.recipe.data_root,
        resolutions=(Resolution.parse(b.resolution, "bench.resolution"),),
        scales=ctx.recipe.models.scales,
        backends=b.backends,
        precisions=b.precisions,
        peers=b.peers,
        threads=ctx.recipe.threads,
        latency=latency,
    )
    results = benchmark(ctx.profile, settings, out=folder / "results.json", progress=True)
    ok = [r for r in results.rows if r.ok]
    if not ok:
        raise SrEdgeError("the benchmark measured no row; see stages/bench/results.json for each row's reason")
    files = write_report(folder / "results.json", folder / "report")
    return {
        "rows": len(results.rows),
        "ok": len(ok),
        "report": str(files.markdown.relative_to(folder)),
        "pareto": str(files.pareto.relative_to(folder)) if files.pareto else None,
        "sheets": [str(p.relative_to(folder)) for p in files.sheets],
    }


# --- the recommendation ----------------------------------------------------------------------------


def _select(ctx: Context, folder: Path) -> dict[str, Any]:
    from ..select import SelectOptions, select

    s, b = ctx.recipe.select, ctx.recipe.bench
    results = ctx.stage_dir("bench") / "results.json"
    bundles = ctx.stage_dir("bundles") / "export"
    picks: list[dict[str, Any]] = []
    for device in s.devices:
        here = device == "detected" or device == ctx.profile.name
        for scale in ctx.recipe.models.scales:
            for budget in s.budgets_ms:
                sel = select(
                    SelectOptions(
                        device=ctx.profile if here else device,
                        budget_ms=budget,
                        scale=scale,
                        resolution=b.resolution,
                        results=(results,) if here else (),
                        bundles_dir=bundles,
                        dataset=ctx.datasets[0] if ctx.datasets[0] != "samples" else "samples",
                    )
                )
                picks.append(
                    {
                        "device": sel.device.name,
                        "measured_here": here,
                        "scale": scale,
                        "budget_ms": budget,
                        "headline": sel.headline(),
                        "estimated": sel.pick.latency_estimated if sel.pick else sel.estimated,
                        "selection": sel.to_json(),
                    }
                )
    (folder / "selection.json").write_text(json.dumps(picks, indent=2, default=str) + "\n")
    (folder / "selection.md").write_text(selection_markdown(picks))
    return {"picks": [p["headline"] for p in picks]}


def selection_markdown(picks: list[dict[str, Any]]) -> str:
    """One table: device, scale, budget, pick and where its figures come from."""
    lines = [
        "# Recommendation per device and budget",
        "",
        "Measured on this machine by the run's benchmark; for the other devices, a roofline",
        "estimate from their profiles (labelled ESTIMATED).",
        "",
        "| device | scale | budget ms | pick | figures |",
        "|---|---|---|---|---|",
    ]
    for p in picks:
        pick = p["selection"]["pick"]
        if pick is None:  # nothing in the matrix meets the budget here (a slow machine, a tight budget)
            cell, how = f"nothing fits: {p['selection']['reason']}", "-"
        else:
            label = f"{pick['id']}" + (f" [{pick['compression']}]" if pick.get("compression") else "")
            psnr = f"{pick['psnr']:.2f} dB" if pick.get("psnr") is not None else "PSNR unknown"
            cell = f"{label}: {psnr}, {pick['latency_ms']:.1f} ms"
            how = "ESTIMATED" if pick["latency_estimated"] else "measured here"
        lines.append(f"| {p['device']} | x{p['scale']} | {p['budget_ms']:g} | {cell} | {how} |")
    return "\n".join(lines) + "\n"


# --- the plan -------------------------------------------------------------------------------------------


def _compression_slugs(recipe: Recipe) -> list[str]:
    scales = recipe.models.scales
    return [f"prune-{m}-x{s}" for m in recipe.prune.models for s in scales] + [
        f"quantize-{m}-x{s}" for m in recipe.quantize.models for s in scales
    ]


def read_summary(folder: Path) -> dict[str, Any]:
    """A finished stage's summary (what its function returned)."""
    doc = json.loads((folder / "stage.json").read_text())
    return dict(doc["summary"])


def _shipped_fingerprint(recipe: Recipe) -> dict[str, str]:
    """Which shipped bundles go in, by their graph's recorded sha256 (a re-export re-runs the bench)."""
    out = {}
    for path in shipped_variants(recipe.models.names, recipe.models.scales):
        manifest = read_manifest(path)
        files = manifest.get("files", {})
        out[f"{path.parent.name}/{path.name}"] = json.dumps(files, sort_keys=True)
    return out


def plan_stages(ctx: Context) -> list[Stage]:
    """Every stage of ``ctx.recipe``, in the order they run."""
    from ..provenance import cpu_model

    r = ctx.recipe
    stages: list[Stage] = []
    data = {"train_data": ctx.train_data, "eval": ctx.datasets[:1], "threads": r.threads}
    for m in r.prune.models:
        for s in r.models.scales:
            settings = {"model": m, "scale": s, **vars(r.prune), "models": None, **data}
            stages.append(Stage(f"prune-{m}-x{s}", f"prune {m} x{s}", settings, (), _prune(m, s)))
    for m in r.quantize.models:
        for s in r.models.scales:
            settings = {"model": m, "scale": s, **vars(r.quantize), "models": None, **data}
            stages.append(Stage(f"quantize-{m}-x{s}", f"quantize {m} x{s}", settings, (), _quantize(m, s)))
    compression = tuple(_compression_slugs(r))
    stages.append(
        Stage(
            "bundles",
            "bundle set",
            {"shipped": _shipped_fingerprint(r)},
            compression,
            _bundles,
        )
    )
    bench_settings = {
        **vars(r.bench),
        "datasets": ctx.datasets,
        "scales": r.models.scales,
        "threads": r.threads,
        "machine": cpu_model(),  # measured latencies belong to this CPU
        "profile": ctx.profile.name,
    }
    stages.append(Stage("bench", f"benchmark on {ctx.profile.name}", bench_settings, ("bundles",), _bench))
    stages.append(Stage("select", "selection per device and budget", vars(r.select), ("bench", "bundles"), _select))
    return stages


def find_datasets(recipe: Recipe) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """(evaluation sets, training sets, notes): a named set that is absent here falls back to
    the embedded samples (a fresh clone has no ../shared/datasets); a folder path must exist."""
    import os

    from ..data.datasets import resolve_dataset

    notes: list[str] = []
    found = []
    for name in recipe.bench.datasets:
        if os.sep in name and not Path(name).is_dir():
            raise SrEdgeError(f"{recipe.source}: bench.datasets: dataset folder {name} does not exist")
        try:
            resolve_dataset(name, recipe.data_root)
            found.append(name)
        except DatasetNotFoundError:
            notes.append(f"dataset {name} not found here")
    if not found:
        found = ["samples"]
        notes.append("evaluating on the embedded samples")
    train = []
    for name in TRAIN_DATA:
        try:
            resolve_dataset(name, recipe.data_root, split="train")
            train.append(name)
        except DatasetNotFoundError:
            pass
    if not train and (recipe.prune.models or recipe.quantize.models):
        notes.append("no T91/BSD200 here: fine-tuning on the embedded samples")
        train = ["samples"]
    return tuple(found), tuple(train), notes
