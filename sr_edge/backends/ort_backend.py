"""ONNX Runtime backend: CPUExecutionProvider everywhere; CUDA / TensorRT providers on a GPU.

ONNX Runtime is a core dependency (it also measures the exported graph at export time),
so this backend is always available. Device ``cpu`` uses the CPU provider only, so a
number measured with it is a CPU number; ``cuda`` puts ORT's TensorRT provider (when
present and ``tensorrt_ep``) ahead of the CUDA provider, with CPU as fallback for
unsupported nodes; ``auto`` picks ``cuda`` when the CUDA provider is installed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from ..errors import SrEdgeError, one_line
from ..types import Precision
from .base import Session, bundle_spec, precision_matches_bundle

if TYPE_CHECKING:
    from ..bundle import Bundle

GraphOptimization = Literal["disable", "basic", "extended", "all"]


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime session options.

    ``threads``: intra-op threads (``None``: ORT's default, one per physical core).
    ``graph_optimization``: ORT's graph optimisation level (``all`` fuses Conv+activation
    and reorders layouts; ``disable`` runs the graph as exported, for debugging).
    ``tensorrt_ep``: on ``cuda``, try ORT's TensorRT provider before the CUDA one.
    ``prelu_rewrite``: on the CPU provider with ``graph_optimization="all"``, rewrite
    per-channel PRelu (FSRCNN, ECBSR) into ops ORT keeps in its blocked layout, with
    bit-identical outputs (:mod:`sr_edge.backends.ort_rewrite`); ``False`` runs the graph as
    exported.
    ``spin``: intra-op threads spin-wait for work during a run (ORT's default). Either way
    they stop spinning when the run returns (``session.force_spinning_stop``): left
    spinning, they took the cores from the frame's colour work after each run (ECBSR x4
    frame 93.6 ms vs 75.8 ms with the stop, network 48.7 vs 47.5 ms; ``spin=False`` cost
    FSRCNN x3 network time, 148.3 vs 127.3 ms; ``python docs/studies/ort_spin_check.py``).
    """

    threads: int | None = None
    graph_optimization: GraphOptimization = "all"
    tensorrt_ep: bool = True
    prelu_rewrite: bool = True
    spin: bool = True

    def __post_init__(self) -> None:
        if self.threads is not None and (isinstance(self.threads, bool) or int(self.threads) < 1):
            raise SrEdgeError(f"ort threads must be a positive integer, got {self.threads!r}")
        for flag in ("tensorrt_ep", "prelu_rewrite", "spin"):
            if not isinstance(getattr(self, flag), bool):
                raise SrEdgeError(f"ort {flag} must be true or false, got {getattr(self, flag)!r}")
        if self.graph_optimization not in ("disable", "basic", "extended", "all"):
            raise SrEdgeError(
                f"ort graph_optimization must be disable, basic, extended or all, got {self.graph_optimization!r}"
            )


def _providers(device: str, options: OrtOptions, precision: Precision) -> list[Any]:
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in have else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("cuda", "gpu") or (device.startswith("cuda:") and device[5:].isascii() and device[5:].isdecimal()):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if "CUDAExecutionProvider" not in have:
            raise SrEdgeError(
                "ort device cuda needs the CUDA execution provider (pip install onnxruntime-gpu); "
                f"available here: {', '.join(sorted(have))}"
            )
        providers: list[Any] = []
        if options.tensorrt_ep and "TensorrtExecutionProvider" in have:
            trt = {"device_id": index, "trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8"}
            providers.append(("TensorrtExecutionProvider", trt))
        providers += [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        return providers
    raise SrEdgeError(f"ort device must be cpu, cuda, cuda:N or auto, got {device!r}")


def cpu_graph(
    model: bytes | str | os.PathLike[str], options: OrtOptions, providers: list[Any]
) -> tuple[bytes | str, dict[str, int]]:
    """The graph to hand ORT and the rewrites applied to it (none off the CPU-only provider)."""
    source = model if isinstance(model, bytes) else os.fspath(model)
    if not (options.prelu_rewrite and options.graph_optimization == "all" and providers == ["CPUExecutionProvider"]):
        return source, {}
    import onnx

    from .ort_rewrite import prelu_for_nchwc

    try:
        graph = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)
    except Exception:  # not ONNX that onnx can parse: let ORT give its own error
        return source, {}
    n = prelu_for_nchwc(graph)
    return (graph.SerializeToString(), {"prelu": n}) if n else (source, {})


def ort_session(
    model: bytes | str | os.PathLike[str],
    options: OrtOptions,
    device: str,
    precision: Precision = "fp32",
) -> tuple[Any, dict[str, int]]:
    """(``onnxruntime.InferenceSession``, graph rewrites applied: op -> nodes) for a graph file or bytes."""
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[options.graph_optimization]
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1  # one graph, one stream of convolutions: inter-op threads only add contention
    if options.threads is not None:
        so.intra_op_num_threads = int(options.threads)
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spin else "0")
    so.add_session_config_entry("session.force_spinning_stop", "1")  # free the cores once a run returns
    # ORT >= 1.20 re-quantises the float weights of a convolution fed by a DequantizeLinear to
    # int8 per tensor (WeightBiasQuantization): the int8 bundle's float convs (those QLinearConv
    # would run slower, qdq.qlinear_pays) already hold their per-channel int8 values, and per
    # tensor they lost 0.70 dB on Set5 (ESPCN x2, AMD Zen 3). A float graph has no such conv.
    so.add_session_config_entry("optimization.disable_specified_optimizers", "WeightBiasQuantization")
    providers = _providers(device, options, precision)
    source, applied = cpu_graph(model, options, providers)
    try:
        return ort.InferenceSession(source, sess_options=so, providers=providers), applied
    except SrEdgeError:
        raise
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/... classes
        raise SrEdgeError(f"ONNX Runtime could not load the graph: {one_line(str(e))[:300]}") from None


def ort_run_fn(
    model: bytes | str | os.PathLike[str],
    options: OrtOptions,
    device: str,
    precision: Precision = "fp32",
) -> tuple[Callable[[np.ndarray], np.ndarray], Any]:
    """(run function, session) for a graph: ``run(x) -> y`` on the graph's one input and output."""
    sess, _ = ort_session(model, options, device, precision)
    return _run_fn(sess), sess


def _run_fn(sess: Any) -> Callable[[np.ndarray], np.ndarray]:
    in_name = sess.get_inputs()[0].name
    out_name = sess.get_outputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(sess.run([out_name], {in_name: x})[0])

    return run


class OrtSession(Session):
    """A bundle on ONNX Runtime."""

    def __init__(self, bundle: Bundle, precision: Precision, device: str, options: OrtOptions) -> None:
        super().__init__("ort", bundle, bundle_spec(bundle), precision, device)
        self._options, self._requested_device = options, device
        started = time.perf_counter()
        self._sess, rewrites = ort_session(bundle.onnx_for("ort"), options, device, precision)
        self._run = _run_fn(self._sess)
        self.graph_rewrites: dict[str, int] | None = rewrites or None  # e.g. {"prelu": 5}
        self.build_seconds = time.perf_counter() - started
        self.providers: tuple[str, ...] = tuple(self._sess.get_providers())
        if device == "auto":  # record what actually runs
            self.device = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"

    def _infer(self, x: np.ndarray) -> np.ndarray:
        try:
            return self._run(x)
        except Exception as e:
            raise SrEdgeError(f"{self.name}: ONNX Runtime failed: {one_line(str(e))[:300]}") from None

    def _frame_network(self) -> Any:
        # the network with this session's rewrites: inside the frame graph they would not apply
        # (its uint8 Quantize/DequantizeLinear read as a QDQ graph), and ECBSR x2's PReLUs left
        # as exported cost its frame 157 ms against 103 ms for the network (AMD Zen 5, 960x540; 104 ms with them)
        import onnx

        providers = _providers(self._requested_device, self._options, self.precision)
        source, _ = cpu_graph(self.bundle.onnx_for("ort"), self._options, providers)
        return onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)

    def _frame_fn(self) -> Callable[[np.ndarray], Any] | None:
        sess, _ = ort_session(self._frame_graph(), self._options, self._requested_device, self.precision)
        in_name = sess.get_inputs()[0].name

        def frame(x: np.ndarray) -> Any:  # (uint8 frame, the network output's sum)
            try:
                out, total = sess.run(None, {in_name: x})
                return out, float(total)
            except Exception as e:
                msg = f"{self.name}: ONNX Runtime failed on the frame graph: {one_line(str(e))[:300]}"
                raise SrEdgeError(msg) from None

        return frame

    def _release(self) -> None:
        self._sess = None


class OrtBackend:
    """ONNX Runtime (core dependency)."""

    name: ClassVar[str] = "ort"
    extra: ClassVar[str] = ""  # onnxruntime is a core dependency: no extra to name
    options_type: ClassVar[type[Any]] = OrtOptions
    precisions: ClassVar[tuple[Precision, ...]] = ("fp32", "fp16", "int8")
    default_device: ClassVar[str] = "cpu"

    def available(self) -> bool:
        """True when onnxruntime imports."""
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False
        return True

    def not_native(self, precision: Precision, device: str) -> str | None:
        """None: ORT runs what it accepts (fp16 needs its TensorRT provider; open says so)."""
        return None

    def open(self, bundle: Bundle, precision: Precision, device: str, options: OrtOptions) -> OrtSession:
        """Create an ``InferenceSession`` for the bundle's graph."""
        precision_matches_bundle(self.name, bundle, precision, self.precisions)
        if precision == "fp16" and not (device.startswith("cuda") or device == "gpu"):
            raise SrEdgeError("ort runs fp16 only through its TensorRT provider on a GPU (device='cuda')")
        return OrtSession(bundle, precision, device, options)
