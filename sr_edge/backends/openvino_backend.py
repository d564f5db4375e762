"""OpenVINO backend: reads the bundle's ONNX directly; devices CPU, GPU, NPU or AUTO.

The precision hint is always explicit: OpenVINO's CPU plugin silently runs bf16 on CPUs
with AMX/AVX-512 BF16 (this development machine's included) unless told
``INFERENCE_PRECISION_HINT=f32``, which would break fp32 parity with no warning. The other
way round, a CPU without native bf16/fp16 compiles f32 under a bf16/f16 hint: the session's
``fallback`` says so in one line (the benchmark skips such a row). An int8
(QDQ) bundle runs its quantised convolutions in int8 whatever the hint; the hint (f32)
covers the rest. ``cache_dir`` turns on OpenVINO's compiled-model cache (GPU/NPU
compiles take seconds; the benchmark reports ``build_seconds`` with and without it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from ..errors import MissingDependencyError, SrEdgeError, one_line
from ..types import Precision
from .base import Session, Shape3, ShapeRange, _shape3, bundle_spec, precision_matches_bundle

if TYPE_CHECKING:
    from ..bundle import Bundle

_DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU", "auto": "AUTO"}
_HINTS: dict[str, str] = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}


@dataclass(frozen=True)
class OpenVinoOptions:
    """OpenVINO compile options.

    ``threads``: ``INFERENCE_NUM_THREADS`` (``None``: OpenVINO's default).
    ``cache_dir``: compiled-model cache folder (``None``: no cache).
    ``performance_hint``: ``latency`` (one frame at a time, the SR use case) or ``throughput``.
    ``static_shape``: (batch, height, width) to reshape the graph to before compiling; NPUs
    need a static shape and GPUs compile faster with one. ``None`` keeps it dynamic.
    """

    threads: int | None = None
    cache_dir: str | None = None
    performance_hint: Literal["latency", "throughput"] = "latency"
    static_shape: Shape3 | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and (isinstance(self.threads, bool) or int(self.threads) < 1):
            raise SrEdgeError(f"openvino threads must be a positive integer, got {self.threads!r}")
        if self.performance_hint not in ("latency", "throughput"):
            raise SrEdgeError(f"openvino performance_hint must be latency or throughput, got {self.performance_hint!r}")
        if self.static_shape is not None:
            object.__setattr__(self, "static_shape", _shape3(self.static_shape, "openvino static_shape"))


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("the openvino backend", "openvino", "openvino") from None
    return openvino


_CORE: list[Any] = []


def shared_core() -> Any:
    """One ``openvino.Core`` per process, for every session: a Core per session left a native
    thread pool per session behind, and after a few dozen (the quantize stage measures each file
    of a bundle) a Ctrl-C in later torch work of the same process crashed it (AMD Zen 3)."""
    if not _CORE:
        _CORE.append(_import_openvino().Core())
    return _CORE[0]


def _ov_device(device: str, core: Any) -> str:
    name = _DEVICES.get(device.lower())
    if name is None:
        raise SrEdgeError(f"openvino device must be one of {', '.join(_DEVICES)}, got {device!r}")
    have = list(core.available_devices)
    if name != "AUTO" and not any(d.split(".")[0] == name for d in have):
        raise SrEdgeError(f"openvino device {name} is not available here (available: {', '.join(have) or 'none'})")
    return name


class OpenVinoSession(Session):
    """A bundle compiled by OpenVINO."""

    # the frame graph with the chroma folded into one conv of the RGB (no Split, no Concat) and
    # one 6-D uint8 transpose: the fastest of the four variants through OpenVINO in 5 of 6
    # interleaved cells on AMD EPYC Zen 3 (ECBSR x2 fp32 / int8, ESPCN x2; 960x540); ORT keeps
    # the default (docs/studies/frame_path_check.py --variants, docs/performance.md)
    frame_options: ClassVar[dict[str, Any]] = {"fused": True, "transpose": "6d"}

    def __init__(self, bundle: Bundle, precision: Precision, device: str, options: OpenVinoOptions) -> None:
        ov = _import_openvino()
        core = shared_core()
        ov_device = _ov_device(device, core)
        shapes = None
        if options.static_shape is not None:
            shapes = ShapeRange(options.static_shape, options.static_shape, options.static_shape)
        super().__init__("openvino", bundle, bundle_spec(bundle, shapes), precision, ov_device.lower())
        capped = _isa_cap(precision) if ov_device == "CPU" else None
        config: dict[str, Any] = {
            # Under a capped oneDNN ISA the plugin would compile bf16/fp16 and fail at the
            # first inference: run f32 and say so (``fallback``), as on a CPU without them.
            "INFERENCE_PRECISION_HINT": _HINTS["fp32"] if capped else _HINTS[precision],
            "PERFORMANCE_HINT": options.performance_hint.upper(),
        }
        if options.threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        graph = bundle.onnx_for("openvino")  # an int8 bundle's OpenVINO placement (model.onnx)
        started = time.perf_counter()
        try:
            # the Core is shared: every session sets the cache it wants ("" = none)
            core.set_property({"CACHE_DIR": str(options.cache_dir) if options.cache_dir is not None else ""})
            if options.static_shape is None:
                # Compiling from the path lets a cache hit skip reading the model.
                compiled = core.compile_model(str(graph), ov_device, config)
            else:
                model = core.read_model(str(graph))
                n, h, w = options.static_shape
                model.reshape({model.inputs[0]: ov.PartialShape([n, bundle.channels, h, w])})
                compiled = core.compile_model(model, ov_device, config)
        except SrEdgeError:
            raise
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with multi-line text
            raise SrEdgeError(f"OpenVINO could not compile {graph}: {one_line(str(e))[:300]}") from None
        self.build_seconds = time.perf_counter() - started
        self._frame_args = (core, ov_device, config, options.static_shape)
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        ran = compiled.get_property("INFERENCE_PRECISION_HINT")
        self.execution_precision = str(getattr(ran, "get_type_name", lambda: ran)())
        self.fallback = precision_fallback(precision, self.execution_precision, ov_device, core)
        if capped:
            self.fallback = f"OpenVINO runs f32, not {precision}, on this CPU: {capped}"

    def _infer(self, x: np.ndarray) -> np.ndarray:
        try:
            self._request.infer({0: x}, share_inputs=True)
            # The output tensor is the request's own buffer, reused by the next call: copy it.
            return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        except Exception as e:
            raise SrEdgeError(f"{self.name}: OpenVINO inference failed: {one_line(str(e))[:300]}") from None

    def _frame_fn(self) -> Callable[[np.ndarray], Any] | None:
        core, ov_device, config, static_shape = self._frame_args
        if static_shape is not None:
            return None  # a static-shape build is for one tensor shape; frames keep the numpy path
        # Under a bf16 (f16) hint the plugin runs every float node in that type (rt_info
        # disable_fp16_compression is not honoured on CPU convolutions): colour work in bf16 put
        # 38% of values more than one grey level off the numpy path and cost ECBSR x2 0.03 dB on
        # Set5 (AMD Zen 5). There the graph is cut: colour in and out compiled f32, the network
        # in the session's precision, three requests per frame.
        split = self.execution_precision in ("bf16", "f16")
        try:
            if split:
                from ..frame_graph import split_frame_graph

                f32 = {**config, "INFERENCE_PRECISION_HINT": _HINTS["fp32"]}
                parts = split_frame_graph(self._frame_model())
                settings = zip(parts, (f32, config, f32), strict=True)
                compiled = [
                    core.compile_model(core.read_model(m.SerializeToString()), ov_device, c) for m, c in settings
                ]
            else:
                compiled = [core.compile_model(core.read_model(self._frame_graph()), ov_device, config)]
        except SrEdgeError:
            raise
        except Exception as e:
            raise SrEdgeError(f"OpenVINO could not compile the frame graph: {one_line(str(e))[:300]}") from None
        requests = [c.create_infer_request() for c in compiled]

        def infer(x: np.ndarray) -> tuple[Any, Any]:  # the runtime's own output buffers
            if not split:
                (whole,) = requests
                whole.infer({0: x}, share_inputs=True)
                return whole.get_output_tensor(0).data, whole.get_output_tensor(1).data
            pre, net, post = requests
            pre.infer({0: x}, share_inputs=True)
            net.infer({0: pre.get_output_tensor(0).data}, share_inputs=True)
            post.infer({0: x, 1: net.get_output_tensor(0).data}, share_inputs=True)
            return post.get_output_tensor(0).data, net.get_output_tensor(1).data

        try:
            # one tiny frame: some plugin builds compile and then fail at the first inference,
            # and the numpy path must take over before a user's frame is lost
            infer(np.zeros((1, 8, 8, 3), np.uint8))
        except Exception as e:
            raise SrEdgeError(f"OpenVINO failed on its first frame: {one_line(str(e))[:300]}") from None
        self._frame_compiled: list[Any] | None = compiled  # kept alive with the session

        def frame(x: np.ndarray) -> Any:  # (uint8 frame, the network output's sum)
            try:
                out, check = infer(x)
                return np.array(out, dtype=np.uint8, copy=True), float(np.asarray(check).sum())
            except Exception as e:
                msg = f"{self.name}: OpenVINO failed on the frame graph: {one_line(str(e))[:300]}"
                raise SrEdgeError(msg) from None

        return frame

    def _release(self) -> None:
        self._request = None
        self._compiled = None
        self._frame_compiled = None


def precision_fallback(precision: Precision, ran: str, ov_device: str, core: Any = None) -> str | None:
    """One line when OpenVINO compiled ``precision`` as another type (``ran``), else None.

    The CPU plugin quietly runs f32 where a CPU has no native bf16 (AVX512_BF16/AMX) or fp16
    (AVX512_FP16): such a row would be fp32 under another name.
    """
    want = _HINTS[precision]
    if precision == "int8" or ran == want:
        return None
    native = ""
    if core is not None and ov_device != "AUTO":
        try:
            caps = core.get_property(ov_device, "OPTIMIZATION_CAPABILITIES")
            native = ", ".join(c for c in caps if c in ("FP32", "BF16", "FP16", "INT8"))
        except Exception:  # a plugin without the property: the message stands without it
            native = ""
    return f"OpenVINO runs {ran}, not {precision}, on this {ov_device}" + (f" (native: {native})" if native else "")


# oneDNN's ISA levels in order (ONEDNN_MAX_CPU_ISA values); bf16 and fp16 kernels need at
# least these. OpenVINO reads the CPU's own flags for OPTIMIZATION_CAPABILITIES, so with the
# ISA capped below them it still lists BF16 and then fails to build its bf16 convolutions.
_ONEDNN_ISAS = (
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16",
)  # fmt: skip
_NEEDS_ISA = {"bf16": "AVX512_CORE_BF16", "fp16": "AVX512_CORE_FP16"}


def _isa_cap(precision: str) -> str | None:
    """Why ``ONEDNN_MAX_CPU_ISA`` rules ``precision`` out, or None."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    need = _NEEDS_ISA.get(precision)
    if not cap or cap in ("ALL", "DEFAULT") or need is None or cap not in _ONEDNN_ISAS:
        return None
    if _ONEDNN_ISAS.index(cap) < _ONEDNN_ISAS.index(need):
        return f"ONEDNN_MAX_CPU_ISA={cap} caps the kernels below {need}"
    return None


class OpenVinoBackend:
    """OpenVINO (``pip install 'sr-edge[openvino]'``)."""

    name: ClassVar[str] = "openvino"
    extra: ClassVar[str] = "openvino"
    options_type: ClassVar[type[Any]] = OpenVinoOptions
    precisions: ClassVar[tuple[Precision, ...]] = ("fp32", "fp16", "bf16", "int8")
    default_device: ClassVar[str] = "cpu"

    def not_native(self, precision: Precision, device: str) -> str | None:
        """One line when the device lists no native ``precision`` (bf16/fp16) in its
        ``OPTIMIZATION_CAPABILITIES``: the CPU plugin would compile another type instead."""
        if precision not in ("bf16", "fp16") or not self.available():
            return None
        try:
            core = shared_core()
            ov_device = _ov_device(device, core)
            if ov_device == "AUTO":
                return None
            caps = list(core.get_property(ov_device, "OPTIMIZATION_CAPABILITIES"))
        except Exception:  # no device or no such property: open() will tell
            return None
        capped = _isa_cap(precision) if ov_device == "CPU" else None
        if capped:
            return f"OpenVINO would not run {precision} on this CPU: {capped}"
        if precision.upper() in caps:
            return None
        native = ", ".join(c for c in caps if c in ("FP32", "BF16", "FP16", "INT8"))
        return (
            f"OpenVINO would not run {precision} on this {ov_device}: it lists no native {precision} "
            f"(native: {native or 'none listed'})"
        )

    def available(self) -> bool:
        """True when openvino imports."""
        try:
            _import_openvino()
        except MissingDependencyError:
            return False
        return True

    def open(self, bundle: Bundle, precision: Precision, device: str, options: OpenVinoOptions) -> OpenVinoSession:
        """Compile the bundle's ONNX for ``device`` with an explicit precision hint."""
        precision_matches_bundle(self.name, bundle, precision, self.precisions)
        return OpenVinoSession(bundle, precision, device, options)
