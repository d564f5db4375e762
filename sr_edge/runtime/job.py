"""``sr-edge upscale``: images, a folder or a video in; every check before any work.

:func:`run` classifies the inputs (one folder, one video, or image files), plans every
output and refuses a bad plan in one line before a model is opened or a byte written,
opens the model (``--backend auto`` says what it chose, in one line on stderr), and runs.
SIGTERM and Ctrl-C stop it between writes of whole files: what was written is complete,
the file being written is removed, and the exit code is 143 or 130.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import SrEdgeError, Terminated  # SIGTERM, raised so that finally blocks remove partial files
from .auto import AUTO, DEFAULT_SCALE, OpenedModel, device_profile, open_model
from .files import TileSetting, choose_tile, upscale_file
from .folder import Plan, Summary, plan_files, plan_folder, run_plan, stale_temps, sweep
from .tiling import MIN_TILE

EXIT_PARTIAL = 1  # some inputs failed; the others were written
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_INTERRUPTED = 130
Mode = Literal["images", "folder", "video"]


def parse_tile(text: str) -> TileSetting:
    """``auto``, ``0`` (the whole image) or a tile side in LR pixels (>= 8)."""
    value = str(text).strip().lower()
    if value == AUTO:
        return AUTO
    try:
        side = int(value)
    except ValueError:
        side = -1
    if side == 0 or side >= MIN_TILE:
        return side
    raise SrEdgeError(
        f"--tile must be auto, 0 (whole image) or a tile side of at least {MIN_TILE} pixels, got {text!r}"
    )


@dataclass(frozen=True)
class UpscaleRequest:
    """Everything ``sr-edge upscale`` was asked to do."""

    model: str
    inputs: tuple[Path, ...]
    out: Path
    scale: int | None = None
    backend: str | None = AUTO
    precision: str | None = None
    device: str | None = None
    profile: str | None = None
    results: tuple[Path, ...] | None = None
    tile: TileSetting = AUTO
    overwrite: bool = False
    recursive: bool = False
    codec: str | None = None
    crf: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.inputs:
            raise SrEdgeError("name at least one input: image files, a folder or a video")
        if self.tile != AUTO:
            parse_tile(str(self.tile))
        if self.results is not None:
            for r in self.results:
                if not Path(r).is_file():
                    raise SrEdgeError(f"--results {r}: no such file (sr-edge bench --out writes one)")


def _mode(inputs: tuple[Path, ...]) -> Mode:
    from .video import is_video_name

    if len(inputs) == 1 and inputs[0].is_dir():
        return "folder"
    if len(inputs) == 1 and is_video_name(inputs[0]):
        return "video"
    for p in inputs:
        if p.is_dir():
            raise SrEdgeError(f"{p}: is a folder; upscale a folder on its own (sr-edge upscale MODEL {p} --out DIR)")
        if is_video_name(p):
            raise SrEdgeError(f"{p}: a video; upscale one video at a time (sr-edge upscale MODEL {p} --out OUT)")
    return "images"


def planned_scale(spec: str, scale: int | None) -> int | None:
    """The scale outputs are named by, known before a model is opened (None: open it to know)."""
    from ..bundle import read_manifest
    from ..source import resolve_model, shipped_bundle

    source = resolve_model(spec)
    path = source.path if source.kind == "bundle" else None
    if source.kind == "zoo" and source.name is not None:
        path = shipped_bundle(source.name, scale or DEFAULT_SCALE)
    if path is not None:
        bundle_scale = read_manifest(path).get("scale")
        if scale is not None and bundle_scale != scale:
            raise SrEdgeError(f"{path}: bundle upscales x{bundle_scale}, not x{scale}; pass --scale {bundle_scale}")
        return int(bundle_scale) if isinstance(bundle_scale, int) else scale
    if source.kind == "checkpoint":
        return scale
    return scale or DEFAULT_SCALE


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(line: str) -> None:
    print(f"sr-edge: {line}", file=sys.stderr, flush=True)


class _Runner:
    """One ``sr-edge upscale`` run; keeps what was written for the interrupted message."""

    def __init__(self, request: UpscaleRequest) -> None:
        self.request = request
        self.summary = Summary()
        self.video_result: Any = None  # set once a video run starts
        self._profile: Any = None

    def profile(self) -> Any:
        if self._profile is None:
            self._profile = device_profile(self.request.profile)
        return self._profile

    def budget_mb(self) -> float:
        return float(self.profile().workload.memory_budget_mb) if self.request.tile == AUTO else 0.0

    def open(self) -> OpenedModel:
        r = self.request
        auto = r.backend in (None, AUTO)
        model = open_model(
            r.model, r.scale, r.backend, r.precision, r.device,
            profile=self.profile() if auto or r.profile else None, results=r.results,
        )  # fmt: skip
        if model.note:
            _say(model.note)
        if model.warning:
            _say(f"warning: {model.warning}")
        return model

    def run(self) -> int:
        r = self.request
        from ..resolve import check_not_an_image

        check_not_an_image(r.model)
        mode = _mode(r.inputs)
        scale = planned_scale(r.model, r.scale)
        if mode == "video":
            return self._video(scale)
        model: OpenedModel | None = None
        if scale is None:  # a checkpoint: its scale is in the file, read with the model
            model = self.open()
            scale = model.scale
        if mode == "folder":
            plan = plan_folder(r.inputs[0], r.out, r.recursive, r.overwrite)
        else:
            plan = plan_files(list(r.inputs), r.out, scale, r.overwrite)
        if mode == "folder" and not plan.jobs and not plan.existing:
            raise SrEdgeError(f"{r.inputs[0]}: no images in it ({', '.join(_image_kinds())})")
        model = model or self.open()
        try:
            return self._images(model, plan, mode)
        finally:
            model.close()

    def _images(self, model: OpenedModel, plan: Plan, mode: Mode) -> int:
        r = self.request
        if mode == "folder":
            r.out.mkdir(exist_ok=True)
        # what a killed run (kill -9) left beside any planned output, skipped ones included
        removed = sweep([*plan.jobs, *plan.existing])
        if removed:
            _say(f"removed {removed} temp file(s) an interrupted run left in {r.out}")
        if mode == "images" and len(plan.jobs) == 1:  # one image: its error is the run's error
            job = plan.jobs[0]
            result = upscale_file(model, job.src, job.dst, r.tile, self.budget_mb())
            if result.tiles > 1:
                how = f"auto: {self.budget_mb():.0f} MB memory budget" if r.tile == AUTO else "--tile"
                _say(f"{result.tiles} tiles of up to {result.tile} px ({how}), overlap {result.overlap} px")
            self.summary.written.append(job.dst)
            print(job.dst, flush=True)
            return 0
        if mode == "folder":
            if plan.folders_not_entered:
                _say(f"{plan.folders_not_entered} subfolder(s) of {r.inputs[0]} not entered (--recursive enters them)")
        on_written = (lambda p: print(p, flush=True)) if mode == "images" else None
        run_plan(model, plan, r.tile, self.budget_mb(), r.progress, self.summary, on_written)
        _say(self.summary.line())
        return EXIT_PARTIAL if self.summary.failed else 0

    def _video(self, scale: int | None) -> int:
        from .video import VideoOptions, VideoResult, check_output, probe_video, upscale_video

        r = self.request
        src = r.inputs[0]
        options = VideoOptions(r.codec, r.crf)
        if not src.is_file():
            raise SrEdgeError(f"{src}: no such video file")
        info = probe_video(src)  # no video stream, undecodable: refused before anything else
        model = None
        if scale is None:
            model = self.open()
            scale = model.scale
        dst = r.out / f"{src.stem}_x{scale}{src.suffix}" if r.out.is_dir() else r.out
        if dst.resolve() == src.resolve():
            raise SrEdgeError(f"{dst}: refusing to overwrite the input video; choose another --out")
        if not dst.parent.is_dir():
            raise SrEdgeError(f"--out {dst}: folder {dst.parent} does not exist")
        if dst.exists() and not r.overwrite:
            raise SrEdgeError(f"{dst} already exists; pass --overwrite to replace it")
        check_output(dst, options)
        model = model or self.open()
        for tmp in stale_temps(dst):  # what a killed run (kill -9) left
            tmp.unlink(missing_ok=True)
            _say(f"removed {tmp.name}, the temp file of an interrupted run")
        result = VideoResult(dst)
        self.video_result = result
        try:
            frame = _probe_frame(info)
            tile = choose_tile(r.tile, frame, model, self.budget_mb())
            upscale_video(model, src, dst, tile, options, r.progress, result)
        finally:
            model.close()
        print(dst, flush=True)
        _say(result.line())
        return 0


def _probe_frame(info: Any) -> Any:
    import numpy as np

    # a stand-in of the frames' size and type, to size tiles before the first is decoded
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (info.height, info.width, 3), (0, 0, 0))


def _image_kinds() -> list[str]:
    from ..data.io import IMAGE_SUFFIXES

    return list(IMAGE_SUFFIXES)


def run(request: UpscaleRequest) -> int:
    """Do what ``request`` asks; the exit code (0, 1 = some inputs failed, 130 / 143 = interrupted).

    One-line :class:`SrEdgeError` for a bad request, raised before anything is written.
    """
    runner = _Runner(request)
    with _sigterm_raises():
        try:
            return runner.run()
        except (Terminated, KeyboardInterrupt) as e:
            what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
            done = len(runner.summary.written)
            if runner.video_result is not None:
                _say(f"{what}: the video was not finished and its partial file was removed; nothing written")
            else:
                _say(
                    f"{what}: {done} output(s) written, each complete; the one in progress was removed; "
                    "run the same command again to do the rest"
                )
            return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
