"""Video in, video out, through the FFmpeg that PyAV packages (``pip install 'sr-edge[video]'``).

Three stages overlap (:class:`~sr_edge.runtime.pipeline.Prefetch`): demux + decode on one
thread, upscaling on another, encode + mux on the caller's, each a few frames ahead of the
next, so the slowest stage sets the pace. What the output keeps of the input:

- every frame, each with its own timestamp (the encoder works in the input stream's time
  base), so frame count, frame rate and variable frame timing are unchanged;
- the rotation (display matrix), written to the output stream as it was;
- the colour space and range: frames are converted to RGB and back with the input's own
  matrix and range, and the output is tagged with them;
- every audio stream: its packets copied unchanged where the output container can hold the
  codec, else transcoded (AAC, or the container's own audio codec where AAC cannot go).

The output is written to a hidden temp file beside the target and renamed when complete,
so an interrupted run leaves no half-written video.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, SrEdgeError, one_line
from .auto import OpenedModel
from .pipeline import Prefetch
from .tiling import tile_bands

# Containers by suffix (FFmpeg muxer names): the temp file's own suffix says nothing.
FORMATS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
    ".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts", ".flv": "flv", ".mpg": "mpeg", ".mpeg": "mpeg",
    ".3gp": "3gp", ".ogv": "ogg", ".wmv": "asf",
}  # fmt: skip
VIDEO_SUFFIXES = tuple(FORMATS)
DEFAULT_CRF = 18  # x264/x265 "visually lossless" end of the range; their own default is 23 / 28
# Encoders whose quality is set by a constant rate factor, and the extra options each needs.
_CRF_CODECS: dict[str, dict[str, str]] = {
    "libx264": {},
    "libx265": {},
    "libsvtav1": {},
    "libaom-av1": {"b": "0"},
    "libvpx-vp9": {"b": "0"},
    "libvpx": {"b": "0"},
}
_PREFERRED_VIDEO = ("libx264", "libopenh264", "libx265", "libvpx-vp9", "libsvtav1", "mpeg4")
_COLORSPACES = {1, 4, 5, 6, 7, 9}  # the matrices swscale converts with (709, FCC, 601, 240M, 2020)
_JPEG_RANGE = 2
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def import_av() -> Any:
    """PyAV, or the one-line error naming the ``video`` extra."""
    try:
        import av
    except ImportError:
        raise MissingDependencyError("video upscaling", "video", "av") from None
    return av


def is_video_name(path: Path) -> bool:
    """A video file by its suffix."""
    return path.suffix.lower() in FORMATS


@dataclass(frozen=True)
class VideoOptions:
    """Encoder settings: ``codec`` (None: libx264 where the container takes it, else the
    container's default) and ``crf`` (None: :data:`DEFAULT_CRF` for CRF encoders)."""

    codec: str | None = None
    crf: int | None = None

    def __post_init__(self) -> None:
        if self.crf is not None and (isinstance(self.crf, bool) or not 0 <= int(self.crf) <= 63):
            raise SrEdgeError(f"--crf must be an integer in 0..63, got {self.crf!r}")


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found in a file."""

    width: int
    height: int
    frames: int  # 0 where the container does not say
    rate: Fraction | None
    rotation: int
    audio: tuple[str, ...]  # codec name of each audio stream


@dataclass
class VideoResult:
    """What :func:`upscale_video` did."""

    dst: Path
    frames: int = 0
    seconds: float = 0.0
    codec: str = ""
    audio: list[str] = field(default_factory=list)  # "copied aac", "transcoded pcm_s24le to aac"
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        """The one-line account printed at the end."""
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in self.stage_seconds.items())
        audio = f"; audio: {', '.join(self.audio)}" if self.audio else "; no audio"
        return f"{self.frames} frames in {self.seconds:.1f} s ({fps:.2f} frames/s; busy: {stages}), {self.codec}{audio}"


def _open_input(av: Any, src: Path) -> Any:
    try:
        return av.open(str(src))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise SrEdgeError(f"{src}: not a readable video ({one_line(str(e))})") from None


def probe_video(src: Path) -> VideoInfo:
    """Size, frame count, rate, rotation and audio of ``src``; one-line errors for a file with
    no video stream or no decodable frame. Reads the first frame only."""
    av = import_av()
    if not src.is_file():
        raise SrEdgeError(f"{src}: no such video file")
    with _open_input(av, src) as container:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
            raise SrEdgeError(f"{src}: no video stream (it holds {kinds}); nothing to upscale")
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as e:
            raise SrEdgeError(f"{src}: its video stream does not decode ({one_line(str(e))})") from None
        if first is None:
            raise SrEdgeError(f"{src}: its video stream holds no frames")
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            width=first.width,
            height=first.height,
            frames=int(stream.frames or 0),
            rate=Fraction(rate) if rate else None,
            rotation=int(first.rotation or 0),
            audio=tuple(a.codec_context.name for a in container.streams.audio),
        )


def _format_of(dst: Path) -> str:
    fmt = FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise SrEdgeError(f"{dst}: unknown video suffix {dst.suffix!r}; use one of {', '.join(VIDEO_SUFFIXES)}")
    return fmt


def _container_codecs(av: Any, fmt: str) -> tuple[set[str], str, str]:
    """Codecs the container ``fmt`` can hold, and its default video and audio codec."""
    with av.open(io.BytesIO(), "w", format=fmt) as probe:
        return set(probe.supported_codecs), str(probe.default_video_codec), str(probe.default_audio_codec)


def check_output(dst: Path, options: VideoOptions) -> str:
    """The video codec ``dst`` will be encoded with (one-line errors for a codec the build
    or the container lacks, or a --crf the codec has no use for). Writes nothing."""
    av = import_av()
    fmt = _format_of(dst)
    supported, default_video, _ = _container_codecs(av, fmt)
    if options.codec is not None:
        codec = options.codec
        if codec not in av.codecs_available:
            raise SrEdgeError(f"--codec {codec}: not an encoder in this FFmpeg build (PyAV {av.__version__})")
        if codec not in supported:
            raise SrEdgeError(f"--codec {codec}: a {dst.suffix} file cannot hold it; try another --codec or suffix")
    else:
        codec = next((c for c in _PREFERRED_VIDEO if c in supported and c in av.codecs_available), default_video)
    if options.crf is not None and codec not in _CRF_CODECS:
        raise SrEdgeError(f"--crf applies to {', '.join(_CRF_CODECS)}; {codec} has no constant rate factor")
    return codec


def _pix_fmt(av: Any, codec: str, width: int, height: int) -> str | None:
    names = {f.name for f in (av.codec.Codec(codec, "w").video_formats or ())}
    # 4:2:0 (what players expect) needs even sides; odd ones keep full chroma instead
    order = ("yuv420p", "yuv444p") if width % 2 == 0 and height % 2 == 0 else ("yuv444p", "yuv420p")
    return next((f for f in order if f in names), None)


def _decoded(container: Any, video: Any, audio: list[Any]) -> Iterator[tuple[str, Any]]:
    """Demux + decode: ("video", frame) and ("audio", packet) in the file's order."""
    for packet in container.demux(video, *audio):
        if packet.stream is video:
            for frame in packet.decode():
                yield "video", frame
        elif packet.size and packet.dts is not None:
            yield "audio", packet


def _upscaled(
    model: OpenedModel, items: Any, tile: int, rgb_kwargs: dict[str, Any], frame_rate: Fraction
) -> Iterator[tuple[str, Any]]:
    """Upscale every video frame (uint8 RGB, tiled like an image); audio passes through."""
    last_pts: int | None = None
    for kind, item in items:
        if kind != "video":
            yield kind, item
            continue
        rgb = item.to_ndarray(format="rgb24", **rgb_kwargs)
        bands = list(tile_bands(model.upscaler, rgb, tile))
        out = bands[0] if len(bands) == 1 else np.concatenate(bands, axis=0)
        pts = item.pts
        if pts is None:  # a container without timestamps (some AVI): one frame duration after the last
            pts = 0 if last_pts is None else last_pts + max(1, round(1 / (frame_rate * item.time_base)))
        last_pts = pts
        yield "video", (out, pts, item.time_base)


def upscale_video(
    model: OpenedModel,
    src: Path,
    dst: Path,
    tile: int,
    options: VideoOptions,
    progress: bool = False,
    result: VideoResult | None = None,
) -> VideoResult:
    """Upscale the video ``src`` into ``dst`` (see the module docstring); ``tile`` as for
    images (0: whole frames). ``result`` is filled in as frames are written."""
    from tqdm import tqdm

    from ..provenance import temp_beside

    av = import_av()
    info = probe_video(src)
    codec = check_output(dst, options)
    fmt = _format_of(dst)
    supported, _, default_audio = _container_codecs(av, fmt)
    result = result if result is not None else VideoResult(dst)
    result.codec = codec
    s = model.scale
    started = time.perf_counter()
    tmp = temp_beside(dst)
    stages: list[Prefetch[Any]] = []
    try:
        with _open_input(av, src) as inp, av.open(str(tmp), "w", format=fmt, options=_mux_options(fmt)) as out:
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            vout = out.add_stream(codec, rate=info.rate)
            vout.width, vout.height = s * info.width, s * info.height
            pix_fmt = _pix_fmt(av, codec, vout.width, vout.height)
            if pix_fmt:
                vout.pix_fmt = pix_fmt
            vout.time_base = vin.time_base
            vout.codec_context.time_base = vin.time_base
            crf = options.crf if options.crf is not None else DEFAULT_CRF
            if codec in _CRF_CODECS:
                vout.codec_context.options = {"crf": str(crf), **_CRF_CODECS[codec]}
            colour = _colour(vin, vout)
            if info.rotation:
                vout.set_display_rotation(info.rotation)
            audio_in = list(inp.streams.audio)
            audio_out = []
            for a in audio_in:
                name = a.codec_context.name
                if name in supported:
                    audio_out.append((out.add_stream_from_template(a), None))
                    result.audio.append(f"copied {name}")
                else:
                    target = "aac" if "aac" in supported else default_audio
                    enc = out.add_stream(target, rate=a.codec_context.sample_rate)
                    enc.layout = _named_layout(av, a.codec_context.layout)
                    audio_out.append((enc, a))
                    result.audio.append(f"transcoded {name} to {target}")
            by_index = {a.index: pair for a, pair in zip(audio_in, audio_out, strict=True)}

            # the stages stop before the containers close: the decode thread reads the input
            decode = Prefetch(_decoded(inp, vin, audio_in), depth=8, name="decode")
            stages.append(decode)
            rate = info.rate or Fraction(25)
            upscale = Prefetch(_upscaled(model, decode, tile, colour["to_rgb"], rate), depth=4, name="upscale")
            stages.append(upscale)
            bar = tqdm(total=info.frames or None, unit="frame", disable=None if progress else True, dynamic_ncols=True)
            try:
                encode_s = _encode(av, out, upscale, vout, pix_fmt, colour["from_rgb"], by_index, result, bar)
                t0 = time.perf_counter()
                for packet in vout.encode(None):
                    out.mux(packet)
                for ostream, decoder in audio_out:
                    if decoder is not None:
                        for af in decoder.decode(None):
                            for packet in ostream.encode(af):
                                out.mux(packet)
                        for packet in ostream.encode(None):
                            out.mux(packet)
                encode_s += time.perf_counter() - t0
            finally:
                bar.close()
                for stage in reversed(stages):
                    stage.close()
            result.stage_seconds = {"decode": decode.busy_s, "upscale": upscale.busy_s, "encode": encode_s}
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except av.FFmpegError as e:
        raise SrEdgeError(f"{src} -> {dst}: FFmpeg failed ({one_line(str(e))})") from None
    finally:
        for stage in reversed(stages):  # already closed unless setting up failed
            stage.close()
        tmp.unlink(missing_ok=True)
        result.seconds = time.perf_counter() - started
    return result


def _encode(
    av: Any,
    out: Any,
    items: Any,
    vout: Any,
    pix_fmt: str | None,
    from_rgb: dict[str, Any],
    audio: dict[int, tuple[Any, Any]],
    result: VideoResult,
    bar: Any,
) -> float:
    """Encode + mux every item as it arrives; the seconds this stage was busy."""
    busy = 0.0
    for kind, item in items:
        t0 = time.perf_counter()
        if kind == "video":
            arr, pts, time_base = item
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if pix_fmt:
                frame = frame.reformat(format=pix_fmt, **from_rgb)
            frame.pts, frame.time_base = pts, time_base
            for packet in vout.encode(frame):
                out.mux(packet)
            result.frames += 1
            bar.update(1)
        else:
            ostream, decoder = audio[item.stream.index]
            if decoder is None:  # copied: the packet as it was, in the output's stream
                item.stream = ostream
                out.mux(item)
            else:
                for af in decoder.decode(item):
                    for packet in ostream.encode(af):
                        out.mux(packet)
        busy += time.perf_counter() - t0
    return busy


def _named_layout(av: Any, layout: Any) -> Any:
    """A channel layout an encoder accepts: PCM in Matroska may say only "1 channels"."""
    n = len(layout.channels)
    if layout.name.endswith("channels") and n in _DEFAULT_LAYOUTS:
        return av.AudioLayout(_DEFAULT_LAYOUTS[n])
    return layout


def _mux_options(fmt: str) -> dict[str, str]:
    # index at the front: the file plays while it downloads (one more pass at the end)
    return {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}


def _colour(vin: Any, vout: Any) -> dict[str, dict[str, Any]]:
    """Convert to RGB and back with the input's own matrix and range, and tag the output so."""
    cc = vin.codec_context
    space = int(cc.colorspace or 0)
    full = int(cc.color_range or 0) == _JPEG_RANGE
    to_rgb: dict[str, Any] = {}
    from_rgb: dict[str, Any] = {}
    if space in _COLORSPACES:
        to_rgb["src_colorspace"] = from_rgb["dst_colorspace"] = space
    to_rgb["src_color_range"] = from_rgb["dst_color_range"] = _JPEG_RANGE if full else 1
    for attr in ("colorspace", "color_range", "color_primaries", "color_trc"):
        value = getattr(cc, attr, None)
        if value:
            try:
                setattr(vout.codec_context, attr, value)
            except (AttributeError, ValueError, TypeError):
                pass  # an encoder that cannot tag it: the pixels are still converted right
    return {"to_rgb": to_rgb, "from_rgb": from_rgb}
