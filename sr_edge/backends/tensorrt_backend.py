"""TensorRT 10 backend: an engine built from the bundle's ONNX on the machine that runs it.

Engines are tied to the GPU model and TensorRT version that built them, so a bundle ships
the ONNX only and each device builds its own engine on first use. The build is cached:

- engine cache: ``<cache_dir>/<model>-x<s>-<precision>-<key>.engine`` where ``key`` hashes
  the ONNX sha256, the TensorRT version, the GPU name and compute capability, the
  precision and every build option (profile, workspace, optimisation level, TF32), so a
  changed bundle, upgraded TensorRT or another GPU never picks up a stale engine;
- timing cache: ``<cache_dir>/timing-trt<version>-<gpu>.cache``, shared by all builds on
  that GPU and version (a timing cache from another version is an error in TensorRT,
  hence the version in the name).

Precisions: ``fp32`` (TF32 off unless ``allow_tf32``: TF32 rounds inputs to a 10-bit
mantissa, which would break fp32 parity), ``fp16``, ``bf16`` and ``int8`` from the bundle's
explicit QDQ nodes (no calibrator). The optimisation profile (min/opt/max of batch,
height, width) comes from the call (``profile=ShapeRange(...)``) or a device profile.

Execution uses the TensorRT 10 name-based API (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) with device buffers and a stream from
cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` in cuda-python < 12.6): no
torch, no pycuda. TensorRT 8.x lacks parts of that API; it gets a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import MissingDependencyError, SrEdgeError, one_line
from ..types import Precision
from .base import Session, ShapeRange, bundle_spec, precision_matches_bundle

if TYPE_CHECKING:
    from ..bundle import Bundle

MIN_TENSORRT_MAJOR = 10
CACHE_ENV = "SR_EDGE_CACHE"


@dataclass(frozen=True)
class TensorRTOptions:
    """TensorRT build options.

    ``profile``: bounds of (batch, height, width) the engine accepts, and the shape it is
    tuned for. ``workspace_mb``: builder scratch memory limit. ``cache_dir``: engine and
    timing caches (``None``: ``$SR_EDGE_CACHE/tensorrt`` or ``~/.cache/sr-edge/tensorrt``).
    ``builder_optimization_level``: 0-5 (TensorRT's default 3). ``allow_tf32``: let fp32
    layers use TF32. ``rebuild``: ignore a cached engine. ``verbose``: TensorRT's verbose log.
    """

    profile: ShapeRange = field(default_factory=ShapeRange)
    workspace_mb: int = 1024
    cache_dir: str | None = None
    builder_optimization_level: int = 3
    allow_tf32: bool = False
    rebuild: bool = False
    verbose: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.profile, ShapeRange):
            raise SrEdgeError(f"tensorrt profile must be a ShapeRange(min, opt, max), got {self.profile!r}")
        if isinstance(self.workspace_mb, bool) or int(self.workspace_mb) < 16:
            raise SrEdgeError(f"tensorrt workspace_mb must be at least 16, got {self.workspace_mb!r}")
        if self.builder_optimization_level not in range(6):
            raise SrEdgeError(f"tensorrt builder_optimization_level must be 0-5, got {self.builder_optimization_level}")


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or a one-line error (missing, stubs only, or older than 10)."""
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError("the tensorrt backend", "tensorrt", "tensorrt") from None
    # `tensorrt-stubs` (for mypy) leaves an empty namespace package named tensorrt behind:
    # importable, but without the library.
    if not hasattr(tensorrt, "Builder"):
        raise MissingDependencyError("the tensorrt backend", "tensorrt", "tensorrt (only type stubs are installed)")
    version = str(getattr(tensorrt, "__version__", "0"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_TENSORRT_MAJOR:
        raise SrEdgeError(
            f"TensorRT {version} found; sr-edge needs TensorRT >= {MIN_TENSORRT_MAJOR} (name-based I/O: "
            "set_tensor_address / execute_async_v3). On Jetson, JetPack 6 ships TensorRT 10"
        )
    return tensorrt


def import_cudart() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart

        return cudart
    except ImportError:
        raise MissingDependencyError("the tensorrt backend", "tensorrt", "cuda-python") from None


def _cuda(result: Any, what: str) -> Any:
    """Unpack a cuda-python call's ``(err, *values)``; raise on an error code."""
    values = tuple(result) if isinstance(result, tuple) else (result,)
    err = values[0]
    if int(err) != 0:
        raise SrEdgeError(f"CUDA {what} failed: {err}")
    rest = values[1:]
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def _device_index(device: str) -> int:
    d = device.lower()
    if d in ("cuda", "gpu"):
        return 0
    m = re.fullmatch(r"(?:cuda|gpu):(\d+)", d)
    if m is None:
        raise SrEdgeError(f"tensorrt device must be cuda or cuda:N, got {device!r}")
    return int(m.group(1))


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is built for (part of the engine cache key)."""

    index: int
    name: str
    compute_capability: str


def gpu_info(cudart: Any, index: int) -> GpuInfo:
    """Name and compute capability of CUDA device ``index``."""
    count = _cuda(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if int(count) <= index:
        raise SrEdgeError(f"tensorrt: CUDA device {index} not found ({int(count)} visible)")
    prop = _cuda(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    raw = prop.name
    name = raw.decode(errors="replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    return GpuInfo(index, name.rstrip("\x00").strip(), f"{prop.major}.{prop.minor}")


def cache_root(options: TensorRTOptions) -> Path:
    """Where engines and timing caches live."""
    if options.cache_dir is not None:
        return Path(options.cache_dir)
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "sr-edge") / "tensorrt"


def engine_key(
    onnx_sha256: str, tensorrt_version: str, gpu: GpuInfo, precision: Precision, options: TensorRTOptions
) -> dict[str, Any]:
    """Everything an engine depends on; its hash names the cached engine file."""
    p = options.profile
    return {
        "onnx_sha256": onnx_sha256,
        "tensorrt": tensorrt_version,
        "gpu": gpu.name,
        "compute_capability": gpu.compute_capability,
        "precision": precision,
        "profile": {"min": list(p.min), "opt": list(p.opt), "max": list(p.max)},
        "workspace_mb": int(options.workspace_mb),
        "builder_optimization_level": options.builder_optimization_level,
        "allow_tf32": options.allow_tf32,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "gpu"


def _atomic_write(path: Path, data: bytes) -> None:
    from ..provenance import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def build_engine(bundle: Bundle, precision: Precision, options: TensorRTOptions, timing_cache: Path) -> bytes:
    """Parse the bundle's ONNX and build a serialized engine (the timing cache is read and updated)."""
    import_tensorrt()
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.VERBOSE if options.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    graph = bundle.onnx_for("tensorrt")  # an int8 bundle's TensorRT placement (model.onnx)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(one_line(str(parser.get_error(i))) for i in range(parser.num_errors))
        raise SrEdgeError(f"TensorRT's ONNX parser rejected {graph}: {errors[:300]} (sr-edge check-trt explains)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    config.builder_optimization_level = options.builder_optimization_level
    if not options.allow_tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    elif precision == "int8":
        # Explicit quantisation: the QDQ nodes carry the scales; no calibrator.
        config.set_flag(trt.BuilderFlag.INT8)
    p = options.profile
    profile = builder.create_optimization_profile()
    lo, opt, hi = (trt.Dims4(n, bundle.channels, h, w) for n, h, w in (p.min, p.opt, p.max))
    profile.set_shape(network.get_input(0).name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # unreadable cache: start afresh
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SrEdgeError(f"TensorRT could not build an engine for {graph} (see TensorRT's log above)")
    _atomic_write(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


class _DeviceBuffer:
    """A growable cudaMalloc allocation."""

    def __init__(self, cudart: Any) -> None:
        self._cudart = cudart
        self.ptr = 0
        self.nbytes = 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            self.ptr = int(_cuda(self._cudart.cudaMalloc(nbytes), "cudaMalloc"))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            self._cudart.cudaFree(self.ptr)
            self.ptr, self.nbytes = 0, 0


class TensorRTSession(Session):
    """A bundle as a TensorRT engine on one CUDA device."""

    def __init__(self, bundle: Bundle, precision: Precision, device: str, options: TensorRTOptions) -> None:
        version = import_tensorrt().__version__
        import tensorrt as trt

        cudart = import_cudart()
        index = _device_index(device)
        super().__init__("tensorrt", bundle, bundle_spec(bundle, options.profile), precision, f"cuda:{index}")
        started = time.perf_counter()
        _cuda(cudart.cudaSetDevice(index), "cudaSetDevice")
        gpu = gpu_info(cudart, index)
        key = engine_key(bundle.onnx_sha256, str(version), gpu, precision, options)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        root = cache_root(options)
        root.mkdir(parents=True, exist_ok=True)
        engine_path = root / f"{bundle.model}-x{bundle.scale}-{precision}-{digest}.engine"
        timing_cache = root / f"timing-trt{version}-{_slug(gpu.name)}.cache"
        self.engine_cached = engine_path.is_file() and not options.rebuild
        if self.engine_cached:
            blob = engine_path.read_bytes()
        else:
            blob = build_engine(bundle, precision, options, timing_cache)
            _atomic_write(engine_path, blob)
            _atomic_write(engine_path.with_suffix(".json"), (json.dumps(key, indent=2) + "\n").encode())
        self.engine_path = engine_path
        logger = trt.Logger(trt.Logger.VERBOSE if options.verbose else trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine: trt.ICudaEngine | None = runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise SrEdgeError(f"{engine_path}: TensorRT cannot load this engine; delete it or pass rebuild=True")
        context: trt.IExecutionContext | None = engine.create_execution_context()
        if context is None:
            raise SrEdgeError(f"{engine_path}: TensorRT could not create an execution context (GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise SrEdgeError(f"{engine_path}: expected one input and one output, got {inputs} / {outputs}")
        self._cudart = cudart
        self._runtime: trt.Runtime | None = runtime
        self._engine: trt.ICudaEngine | None = engine
        self._context: trt.IExecutionContext | None = context
        self._in, self._out = inputs[0], outputs[0]
        self._in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._in)))
        self._out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._out)))
        self._stream: Any = _cuda(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._d_in, self._d_out = _DeviceBuffer(cudart), _DeviceBuffer(cudart)
        self.gpu = gpu
        self.build_seconds = time.perf_counter() - started

    def _infer(self, x: np.ndarray) -> np.ndarray:
        cudart, context = self._cudart, self._context
        if context is None:
            raise SrEdgeError(f"{self.name}: session is closed")
        x = np.ascontiguousarray(x, dtype=self._in_dtype)
        if not context.set_input_shape(self._in, tuple(x.shape)):
            raise SrEdgeError(f"{self.name}: TensorRT rejected input shape {x.shape}")
        dims = context.get_tensor_shape(self._out)
        out_shape = tuple(int(dims[i]) for i in range(len(dims)))
        y = np.empty(out_shape, dtype=self._out_dtype)
        d_in = self._d_in.ensure(x.nbytes)
        d_out = self._d_out.ensure(y.nbytes)
        stream = self._stream
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _cuda(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, h2d, stream), "cudaMemcpyAsync (input)")
        context.set_tensor_address(self._in, d_in)
        context.set_tensor_address(self._out, d_out)
        if not context.execute_async_v3(int(stream)):
            raise SrEdgeError(f"{self.name}: TensorRT execution failed")
        _cuda(cudart.cudaMemcpyAsync(y.ctypes.data, d_out, y.nbytes, d2h, stream), "cudaMemcpyAsync (output)")
        _cuda(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return y.astype(np.float32, copy=False)

    def _release(self) -> None:
        self._d_in.free()
        self._d_out.free()
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None


class TensorRTBackend:
    """TensorRT >= 10 with cuda-python (``pip install 'sr-edge[tensorrt]'``, or JetPack 6 on Jetson)."""

    name: ClassVar[str] = "tensorrt"
    extra: ClassVar[str] = "tensorrt"
    options_type: ClassVar[type[Any]] = TensorRTOptions
    precisions: ClassVar[tuple[Precision, ...]] = ("fp32", "fp16", "bf16", "int8")
    default_device: ClassVar[str] = "cuda"

    def available(self) -> bool:
        """True when TensorRT >= 10, cuda-python and at least one CUDA device are present."""
        try:
            import_tensorrt()
            cudart = import_cudart()
            return int(_cuda(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")) > 0
        except (SrEdgeError, OSError, RuntimeError):
            return False

    def not_native(self, precision: Precision, device: str) -> str | None:
        """None: no forecast (TensorRT's precision flags permit a type per layer, they do not force it)."""
        return None

    def open(self, bundle: Bundle, precision: Precision, device: str, options: TensorRTOptions) -> TensorRTSession:
        """Load the cached engine for this bundle, GPU and options, or build and cache it."""
        precision_matches_bundle(self.name, bundle, precision, self.precisions)
        return TensorRTSession(bundle, precision, device, options)
