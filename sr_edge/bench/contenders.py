"""What a benchmark row measures: a bundle on a backend, or a peer.

Every contender answers the same three questions, so the runner never asks which kind it
holds: ``skip_reason()`` (why it cannot run here, before anything is built),
``open()`` (build it: an image upscaler, the bare network function, its build time and
its MACs) and the static facts of its row. Kinds:

- :class:`BundleContender`: an exported bundle through :func:`sr_edge.backends.load_bundle`
  on a deployment backend, or on the ``torch`` backend (PyTorch eager on the bundle's
  parent weights: the peer a user without sr-edge runs);
- :class:`BicubicContender`: sr-edge's MATLAB bicubic (the quality floor);
- :class:`OpenCVContender`: OpenCV ``dnn_superres`` with its own ESPCN / FSRCNN graphs.

Quality is always measured through ``open().upscaler``: the deployed runtime's outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import SrEdgeError
from ..upscale import Bicubic, Upscaler
from .flops import onnx_macs_per_lr_pixel, opencv_macs_per_lr_pixel
from .results import row_id

TensorFn = Callable[[np.ndarray], np.ndarray]


class NotNative(SrEdgeError):
    """The runtime would run this row at another precision than its label: the row is skipped."""


@dataclass
class Deployed:
    """A contender, built and ready to run."""

    upscaler: Upscaler
    model_fn: TensorFn | None  # N x C x H x W float32 -> N x C x sH x sW (None: no separable network)
    channels: int  # C of model_fn's input
    build_s: float
    macs_per_lr_pixel: float | None
    runtime: dict[str, Any] = field(default_factory=dict)  # what the runtime reports it chose
    close: Callable[[], None] = lambda: None


class Contender(Protocol):
    """One row of the benchmark matrix."""

    @property
    def variant(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def scale(self) -> int: ...

    @property
    def backend(self) -> str: ...

    @property
    def precision(self) -> str: ...

    @property
    def peer(self) -> str | None: ...

    @property
    def id(self) -> str: ...

    def bundle_info(self) -> Mapping[str, Any] | None: ...

    def skip_reason(self) -> str | None: ...

    def open(self) -> Deployed: ...


class _Base:
    variant: str
    backend: str
    precision: str

    @property
    def id(self) -> str:
        return row_id(self.variant, self.backend, self.precision)

    def bundle_info(self) -> Mapping[str, Any] | None:
        return None

    def forecast(self) -> str | None:
        """Why this row would be skipped once open (a precision the runtime would not run
        natively here), from a cheap check that builds nothing; None when it would run."""
        return None


@dataclass(frozen=True)
class BundleContender(_Base):
    """An exported bundle on one backend at one precision."""

    path: Path
    variant: str
    model: str
    family: str
    scale: int
    backend: str
    precision: str
    device: str
    options: Mapping[str, Any]
    manifest: Mapping[str, Any]
    peer: str | None = None  # "torch" for PyTorch eager, the reference peer

    def bundle_info(self) -> Mapping[str, Any]:
        files = self.manifest.get("files", {})
        return {
            "path": str(self.path),
            "precision": self.manifest.get("precision"),
            "onnx_sha256": (files.get("model.onnx") or {}).get("sha256"),
            "source": self.manifest.get("source"),
            "export_metrics": self.manifest.get("metrics"),
        }

    def skip_reason(self) -> str | None:
        from ..backends import get_backend

        backend = get_backend(self.backend)
        if backend.available():
            return None
        extra = f"pip install 'sr-edge[{backend.extra}]'" if backend.extra else "reinstall sr-edge"
        return f"backend {self.backend} is not usable here (runtime not installed or no device; {extra})"

    def forecast(self) -> str | None:
        from ..backends import get_backend

        return get_backend(self.backend).not_native(self.precision, self.device)  # type: ignore[arg-type]

    def open(self) -> Deployed:
        from ..backends import load_bundle

        session = load_bundle(self.path, self.backend, self.precision, self.device, **self.options)
        if session.fallback:
            session.close()
            raise NotNative(
                f"{session.fallback}; the row would be fp32 under another name "
                f"(bench where {self.precision} is native, or drop it from the profile)"
            )
        try:
            macs = onnx_macs_per_lr_pixel(session.bundle.onnx_path)
        except Exception:  # counting is a nicety: an unusual graph must not fail the row
            macs = None
        runtime = {"device": session.device, **{k: v for k, v in self.options.items() if k == "threads"}}
        # what some runtimes report they chose
        for attr in ("execution_precision", "providers", "memory_format", "graph_rewrites"):
            value = getattr(session, attr, None)
            if value is not None:
                runtime[attr] = list(value) if isinstance(value, tuple) else value
        upscaler = session.upscaler(workers=self.options.get("threads"))  # colour work on the row's threads
        if upscaler.color_mode == "y":
            runtime["colour_threads"] = upscaler.workers
            runtime["frame_path"] = upscaler.frame_path  # "graph": the colour work inside the runtime's graph
        return Deployed(
            upscaler=upscaler,
            model_fn=session.run,
            channels=session.input_spec.channels,
            build_s=float(session.build_seconds),
            macs_per_lr_pixel=macs,
            runtime=runtime,
            close=session.close,
        )


@dataclass(frozen=True)
class BicubicContender(_Base):
    """sr-edge's MATLAB bicubic: the quality floor every table starts from."""

    scale: int
    variant: str = ""
    model: str = "bicubic"
    family: str = "interpolation"
    backend: str = "numpy"
    precision: str = "fp64"
    peer: str | None = "bicubic"

    def __post_init__(self) -> None:
        if not self.variant:
            object.__setattr__(self, "variant", f"bicubic-x{self.scale}")

    def skip_reason(self) -> str | None:
        return None

    def open(self) -> Deployed:
        return Deployed(Bicubic(self.scale), None, 3, 0.0, None, {"device": "cpu"})


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[Any]:
    """OpenCV 5's new TF importer logs an error for DepthToSpace before falling back: silence it."""
    import cv2

    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield cv2
    finally:
        log.setLogLevel(level)


class OpenCVUpscaler:
    """OpenCV ``DnnSuperResImpl`` behind the :class:`~sr_edge.upscale.Upscaler` protocol.

    OpenCV works in BGR: RGB is reversed on the way in and out. A grey image is given as
    three equal channels and the output's mean comes back (its own Y, as the protocol
    measures grey images).
    """

    def __init__(self, name: str, scale: int, impl: Any) -> None:
        self.name = name
        self.scale = scale
        self._impl = impl

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        if lr.dtype != np.uint8:
            raise SrEdgeError(f"{self.name}: OpenCV dnn_superres takes 8-bit images, got {lr.dtype}")
        grey = lr.ndim == 2 or lr.shape[-1] == 1
        planes = lr.reshape(lr.shape[0], lr.shape[1], -1)
        bgr = np.repeat(planes, 3, axis=-1) if grey else np.ascontiguousarray(planes[..., ::-1])
        out = self._impl.upsample(bgr)
        if grey:
            return np.round(out.astype(np.float32).mean(axis=-1, keepdims=True)).astype(np.uint8)
        return np.ascontiguousarray(out[..., ::-1])


# OpenCV's own model files and the algorithm name dnn_superres needs for each.
OPENCV_MODELS: dict[str, str] = {"ESPCN": "espcn", "FSRCNN": "fsrcnn", "FSRCNN-small": "fsrcnn"}


@dataclass(frozen=True)
class OpenCVContender(_Base):
    """OpenCV ``dnn_superres`` with its own ESPCN / FSRCNN graph (what laptop users pick today)."""

    name: str  # ESPCN, FSRCNN, FSRCNN-small
    scale: int
    models_dir: Path
    threads: int | None = None
    variant: str = ""
    model: str = ""
    family: str = "opencv-dnn_superres"
    backend: str = "opencv"
    precision: str = "fp32"
    peer: str | None = "opencv"

    def __post_init__(self) -> None:
        if self.name not in OPENCV_MODELS:
            raise SrEdgeError(f"unknown OpenCV dnn_superres model {self.name!r}; known: {', '.join(OPENCV_MODELS)}")
        object.__setattr__(self, "model", f"opencv-{self.name.lower()}")
        if not self.variant:
            object.__setattr__(self, "variant", f"opencv-{self.name.lower()}-x{self.scale}")

    @property
    def pb(self) -> Path:
        """The TensorFlow graph file."""
        return self.models_dir / f"{self.name}_x{self.scale}.pb"

    def bundle_info(self) -> Mapping[str, Any]:
        from ..provenance import sha256_file

        return {"path": str(self.pb), "sha256": sha256_file(self.pb) if self.pb.is_file() else None}

    def skip_reason(self) -> str | None:
        try:
            import cv2
        except ImportError:
            return "OpenCV is not installed (pip install 'sr-edge[bench]')"
        if not hasattr(cv2, "dnn_superres"):
            return "this OpenCV lacks dnn_superres (install opencv-contrib-python-headless, not opencv-python)"
        if not hasattr(cv2.dnn, "readNetFromTensorflow"):
            # OpenCV 5 dropped the TensorFlow importer, and dnn_superres's models are TF graphs.
            return (f"OpenCV {cv2.__version__} cannot read dnn_superres's TensorFlow models "
                    "(pip install 'opencv-contrib-python-headless>=4.8,<5')")
        if not self.pb.is_file():
            return f"OpenCV model file {self.pb} not found"
        return None

    def open(self) -> Deployed:
        with _quiet_opencv() as cv2:
            if self.threads is not None:
                cv2.setNumThreads(int(self.threads))
            started = time.perf_counter()
            impl = cv2.dnn_superres.DnnSuperResImpl_create()
            impl.readModel(str(self.pb))
            impl.setModel(OPENCV_MODELS[self.name], self.scale)
            build = time.perf_counter() - started
            net = cv2.dnn.readNetFromTensorflow(str(self.pb))
            macs = opencv_macs_per_lr_pixel(net)

        def model_fn(x: np.ndarray) -> np.ndarray:
            # The same network dnn_superres runs on the Y plane (1 x 1 x H x W in [0, 1]).
            net.setInput(x)
            return np.asarray(net.forward())

        runtime = {"device": "cpu", "threads": self.threads, "opencv": cv2.__version__}
        return Deployed(OpenCVUpscaler(self.variant, self.scale, impl), model_fn, 1, build, macs, runtime)


def options_for(backend: str, threads: int | None, shape_range: Any | None) -> dict[str, Any]:
    """The keyword options the bench passes to ``load_bundle`` for ``backend``.

    Chosen by the fields the backend's options class declares (``threads``, ``profile``),
    so a new backend needs no change here.
    """
    from ..backends import get_backend

    names = {f.name for f in dataclasses.fields(get_backend(backend).options_type)}
    opts: dict[str, Any] = {}
    if threads is not None and "threads" in names:
        opts["threads"] = threads
    if shape_range is not None and "profile" in names:
        opts["profile"] = shape_range
    return opts
