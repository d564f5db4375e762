"""Folders and lists of images: plan every output first, then upscale, skip, or report.

``sr-edge upscale MODEL DIR --out OUTDIR`` mirrors ``DIR`` (``--recursive``: its subfolders
too) into ``OUTDIR`` under the same relative paths and names. Before any work the whole
plan is checked (an output that is an input, two inputs onto one output); outputs that
exist are skipped unless ``overwrite``, so a re-run after an interruption does only what
is missing. Each output is written to a hidden temp file beside it and renamed when
complete (:func:`sr_edge.provenance.temp_beside`), so a killed run (even ``kill -9``)
leaves finished files and at most a stale temp file, which the next run over the same
outputs removes. A file that fails to decode is reported and skipped; the run goes on.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data.io import IMAGE_SUFFIXES
from ..errors import SrEdgeError, one_line
from .auto import OpenedModel
from .files import TileSetting, upscale_file


@dataclass(frozen=True)
class Job:
    """One image to upscale."""

    src: Path
    dst: Path


@dataclass
class Plan:
    """What a run will do: ``jobs`` to run, ``existing`` outputs to skip, files ``ignored``
    (not images, by suffix) and subfolders not entered (without ``recursive``)."""

    jobs: list[Job] = field(default_factory=list)
    existing: list[Job] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    folders_not_entered: int = 0


@dataclass
class Summary:
    """What a run did."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        """The one-line account printed at the end of a run."""
        rate = f" ({len(self.written) / self.seconds:.2f} images/s)" if self.written and self.seconds > 0 else ""
        parts = [f"{len(self.written)} written"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (output exists; --overwrite replaces it)")
        parts.append(f"{len(self.failed)} failed")
        if self.ignored:
            names = ", ".join(p.name for p in self.ignored[:3]) + (", ..." if len(self.ignored) > 3 else "")
            parts.append(f"{len(self.ignored)} not an image ({names})")
        return f"{', '.join(parts)} in {self.seconds:.1f} s{rate}"


def is_image_name(path: Path) -> bool:
    """An image file by its suffix (what ``read_image`` reads)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def _hidden(name: str) -> bool:
    return name.startswith(".")  # dot files, and our own temp files (.name.XXXX.tmp)


def _add(plan: Plan, job: Job, overwrite: bool, sources: dict[Path, Path], targets: dict[Path, Path]) -> None:
    key = job.dst.resolve()
    if key in sources:
        raise SrEdgeError(f"{job.dst}: refusing to overwrite the input image {sources[key]}; choose another --out")
    if key in targets:
        raise SrEdgeError(
            f"{targets[key]} and {job.src} would both be written to {job.dst}; upscale them into separate --out folders"
        )
    targets[key] = job.src
    (plan.existing if job.dst.exists() and not overwrite else plan.jobs).append(job)


def plan_folder(root: Path, out: Path, recursive: bool, overwrite: bool) -> Plan:
    """Every image under ``root`` mapped to the same relative path under ``out``."""
    if not root.is_dir():
        raise SrEdgeError(f"{root}: no such folder")
    if out.exists() and not out.is_dir():
        raise SrEdgeError(f"--out {out}: a file, not a folder; a folder of images goes into a folder")
    if not out.exists() and not out.parent.is_dir():
        raise SrEdgeError(f"--out {out}: its folder {out.parent} does not exist")
    root_key, out_key = root.resolve(), out.resolve()
    if out_key == root_key:
        raise SrEdgeError(f"--out {out} is the input folder: its images would be overwritten; choose another --out")
    plan = Plan()
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        keep = sorted(d for d in dirs if not _hidden(d) and (here / d).resolve() != out_key)
        if recursive:
            dirs[:] = keep
        else:
            plan.folders_not_entered = len(keep)
            dirs[:] = []
        files.extend(here / n for n in sorted(names) if not _hidden(n) and (here / n).is_file())
    sources = {f.resolve(): f for f in files}
    targets: dict[Path, Path] = {}
    for f in files:
        if not is_image_name(f):
            plan.ignored.append(f)
            continue
        _add(plan, Job(f, out / f.relative_to(root)), overwrite, sources, targets)
    return plan


def plan_files(inputs: Sequence[Path], out: Path, scale: int, overwrite: bool) -> Plan:
    """Image files given one by one: ``out`` is the output file (one input) or an existing
    folder (``<stem>_x<scale><suffix>`` in it)."""
    if len(inputs) > 1 and not out.is_dir():
        raise SrEdgeError(f"--out {out} must be an existing folder when upscaling several images")
    plan = Plan()
    sources = {src.resolve(): src for src in inputs}
    targets: dict[Path, Path] = {}
    for src in inputs:
        if src.is_dir():
            raise SrEdgeError(
                f"{src}: is a folder; upscale a folder on its own (sr-edge upscale MODEL {src} --out DIR)"
            )
        if not src.exists():
            raise SrEdgeError(f"{src}: no such image file")
        dst = out / f"{src.stem}_x{scale}{src.suffix}" if out.is_dir() else out
        if not is_image_name(dst):
            kinds = ", ".join(IMAGE_SUFFIXES)
            raise SrEdgeError(f"--out {dst}: unknown image suffix {dst.suffix!r}; use one of {kinds}")
        if not dst.parent.is_dir():
            raise SrEdgeError(f"--out {dst}: folder {dst.parent} does not exist")
        _add(plan, Job(src, dst), overwrite, sources, targets)
    if plan.existing:
        raise SrEdgeError(f"{plan.existing[0].dst} already exists; pass --overwrite to replace it")
    return plan


def stale_temps(dst: Path) -> list[Path]:
    """Temp files an interrupted write of ``dst`` left (named as ``temp_beside`` names them)."""
    pattern = os.path.join(glob.escape(str(dst.parent)), f".{glob.escape(dst.name)}.*.tmp")
    return [Path(p) for p in glob.glob(pattern)]


def sweep(jobs: Sequence[Job]) -> int:
    """Remove the stale temp files of ``jobs``' outputs; how many were removed."""
    removed = 0
    for job in jobs:
        for tmp in stale_temps(job.dst):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def run_plan(
    model: OpenedModel,
    plan: Plan,
    tile: TileSetting,
    budget_mb: float,
    progress: bool,
    summary: Summary | None = None,
    on_written: Callable[[Path], None] | None = None,
) -> Summary:
    """Upscale every job of ``plan``; failures are printed (stderr), counted and skipped.

    ``summary`` is filled in as the run goes, so a caller interrupted mid-way still knows
    what was written.
    """
    from tqdm import tqdm

    summary = summary if summary is not None else Summary()
    summary.skipped = [j.dst for j in plan.existing]
    summary.ignored = list(plan.ignored)
    started = time.perf_counter()
    bar = tqdm(
        total=len(plan.jobs),
        unit="image",
        disable=None if progress and len(plan.jobs) > 1 else True,
        dynamic_ncols=True,
    )
    tile_bar: tqdm | None = None

    def on_tiles(done: int, total: int) -> None:
        nonlocal tile_bar
        if not progress or total < 16:
            return
        if tile_bar is None:
            tile_bar = tqdm(total=total, unit="tile", leave=False, disable=None, dynamic_ncols=True)
        tile_bar.update(done - tile_bar.n)

    try:
        for job in plan.jobs:
            try:
                job.dst.parent.mkdir(parents=True, exist_ok=True)
                upscale_file(model, job.src, job.dst, tile, budget_mb, on_tiles)
            except SrEdgeError as e:
                summary.failed.append((job.src, str(e)))
                bar.write(f"sr-edge: error: {one_line(str(e))}", file=sys.stderr)
            except OSError as e:  # unreadable file, no permission, disk full: this file, not the run
                where = e.filename or job.src
                summary.failed.append((job.src, f"{where}: {e.strerror or e}"))
                bar.write(f"sr-edge: error: {where}: {e.strerror or e}", file=sys.stderr)
            else:
                summary.written.append(job.dst)
                if on_written is not None:
                    on_written(job.dst)
            finally:
                if tile_bar is not None:
                    tile_bar.close()
                    tile_bar = None
            bar.update(1)
            bar.set_postfix(written=len(summary.written), failed=len(summary.failed), refresh=False)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - started
    return summary
