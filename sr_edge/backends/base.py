"""The one Runner protocol every backend implements (after Polygraphy's runners).

A :class:`Backend` is a stateless description: ``name``, the pip ``extra`` that installs
it, ``available()``, its typed options class, and ``open(bundle, precision, device,
options) -> Session``. A :class:`Session` owns the compiled model: ``run(x) -> y`` on
N x C x H x W float32 arrays in [0, 1], ``input_spec``, ``precision``, ``device``,
``build_seconds`` (session creation / compilation time) and ``close()`` (also as a
context manager). Input checks live here, once, so every backend rejects a wrong shape
or dtype with the same one-line error before touching its runtime.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import numpy as np

from ..errors import SrEdgeError, one_line
from ..types import Precision

if TYPE_CHECKING:
    from ..bundle import Bundle
    from ..upscale import NetworkUpscaler

Shape3 = tuple[int, int, int]  # (batch, height, width): the dynamic dimensions of an NCHW input


def _shape3(value: Any, what: str) -> Shape3:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise SrEdgeError(f"{what} must be (batch, height, width), got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
            raise SrEdgeError(f"{what} must hold positive integers, got {value!r}")
        out.append(int(v))
    return (out[0], out[1], out[2])


@dataclass(frozen=True)
class ShapeRange:
    """Bounds of the dynamic input dimensions (batch, height, width) an engine accepts.

    TensorRT optimisation profiles need them (a 1280x720 profile rejects 720x1280: give
    ``max`` room in both orientations); ``opt`` is the shape kernels are tuned for.
    """

    min: Shape3 = (1, 8, 8)
    opt: Shape3 = (1, 360, 640)
    max: Shape3 = (1, 1088, 1920)

    def __post_init__(self) -> None:
        lo, opt, hi = _shape3(self.min, "min shape"), _shape3(self.opt, "opt shape"), _shape3(self.max, "max shape")
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "opt", opt)
        object.__setattr__(self, "max", hi)
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
            raise SrEdgeError(f"shape range must satisfy min <= opt <= max per dimension, got {lo} / {opt} / {hi}")

    def contains(self, shape: Shape3) -> bool:
        """True when every dimension of ``shape`` lies within [min, max]."""
        return all(a <= v <= c for a, v, c in zip(self.min, shape, self.max, strict=True))

    def __str__(self) -> str:
        f = lambda s: "x".join(map(str, s))  # noqa: E731
        return f"{f(self.min)}..{f(self.max)} (opt {f(self.opt)})"


def parse_shape(text: str) -> Shape3:
    """``"1x360x640"`` or ``"360x640"`` (batch 1) -> (batch, height, width)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise SrEdgeError(f"shape must look like 360x640 or 1x360x640, got {text!r}") from None
    if len(nums) == 2:
        nums = [1, *nums]
    return _shape3(tuple(nums), f"shape {text!r}")


@dataclass(frozen=True)
class InputSpec:
    """What ``Session.run`` accepts: N x ``channels`` x H x W float32 in [0, 1].

    ``shapes`` bounds (batch, height, width) when the backend fixed them at build time
    (TensorRT profiles, an OpenVINO static reshape); ``None`` means any size.
    """

    name: str
    channels: int
    scale: int
    dtype: str = "float32"
    layout: str = "NCHW"
    value_range: tuple[float, float] = (0.0, 1.0)
    shapes: ShapeRange | None = None

    def check(self, x: Any, who: str) -> np.ndarray:
        """Return ``x`` as a C-contiguous array, or raise a one-line error naming the problem."""
        if not isinstance(x, np.ndarray):
            raise SrEdgeError(f"{who}: input must be a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise SrEdgeError(f"{who}: input dtype is {x.dtype}, expected float32 ({self.layout}, values in [0, 1])")
        if x.ndim != 4:
            raise SrEdgeError(f"{who}: input shape {x.shape} is not 4-D; expected N x {self.channels} x H x W")
        n, c, h, w = x.shape
        if c != self.channels:
            raise SrEdgeError(f"{who}: input has {c} channels, expected {self.channels} (shape N x C x H x W)")
        if min(n, h, w) < 1:
            raise SrEdgeError(f"{who}: input shape {x.shape} has an empty dimension")
        if self.shapes is not None and not self.shapes.contains((n, h, w)):
            raise SrEdgeError(
                f"{who}: input batch x height x width {n}x{h}x{w} is outside the built range {self.shapes}; "
                "rebuild with a wider profile"
            )
        return np.ascontiguousarray(x)


class Session(abc.ABC):
    """An opened bundle on one backend. Use as a context manager or call ``close()``."""

    backend: str
    bundle: Bundle
    input_spec: InputSpec
    precision: Precision
    device: str
    build_seconds: float
    # keyword options of sr_edge.frame_graph.frame_graph for this runtime: the variant that
    # measured fastest through it (docs/studies/frame_path_check.py --variants)
    frame_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, backend: str, bundle: Bundle, input_spec: InputSpec, precision: Precision, device: str) -> None:
        self.backend = backend
        self.bundle = bundle
        self.input_spec = input_spec
        self.precision = precision
        self.device = device
        self.build_seconds = 0.0
        # One line where the runtime runs something other than the requested precision
        # (OpenVINO on a CPU without bf16 runs f32): the outputs are right, the label is not.
        self.fallback: str | None = None
        self._closed = False

    @property
    def name(self) -> str:
        """Display name: model, backend and precision (e.g. ``espcn@openvino/fp32``)."""
        return f"{self.bundle.model}@{self.backend}/{self.precision}"

    def run(self, x: np.ndarray) -> np.ndarray:
        """N x C x H x W float32 in [0, 1] -> N x C x sH x sW float32."""
        if self._closed:
            raise SrEdgeError(f"{self.name}: session is closed")
        x = self.input_spec.check(x, self.name)
        y = self._infer(x)
        n, c, h, w = x.shape
        s = self.input_spec.scale
        if y.shape != (n, c, h * s, w * s):
            raise SrEdgeError(f"{self.name}: graph returned shape {y.shape}, expected {(n, c, h * s, w * s)}")
        return y

    __call__ = run

    @abc.abstractmethod
    def _infer(self, x: np.ndarray) -> np.ndarray:
        """Run the validated input through the runtime."""

    def _release(self) -> None:  # noqa: B027  (optional hook: most runtimes free on garbage collection)
        """Free runtime resources (device buffers, streams)."""

    def close(self) -> None:
        """Release the session; ``run`` fails afterwards."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upscaler(self, workers: int | None = None, frame_path: str = "graph") -> NetworkUpscaler:
        """This session as an image :class:`~sr_edge.upscale.Upscaler` (colour handling from the manifest).

        ``workers``: threads for the colour work around the network (default: 2 where there are 2 cores).
        ``frame_path``: for a Y-channel model on a backend that builds one, ``"graph"`` runs uint8
        RGB frames through one graph with the colour work inside (:mod:`sr_edge.frame_graph`;
        the runtime's kernels and threads do it); ``"numpy"`` keeps it in numpy and Pillow
        around the network. The upscaler's ``frame_path`` says which runs (and why not the graph).
        """
        from ..upscale import NetworkUpscaler

        if frame_path not in ("graph", "numpy"):
            raise SrEdgeError(f"frame_path must be 'graph' or 'numpy', got {frame_path!r}")
        frame, why = None, "numpy"
        if frame_path == "graph" and self.bundle.color_mode == "y" and self.bundle.channels == 1:
            try:
                frame = self._frame_fn()
            except SrEdgeError as e:  # the numpy path still works: say why it runs
                why = f"numpy (the frame graph failed: {one_line(str(e))[:200]})"
            else:
                why = "graph" if frame is not None else f"numpy ({self.backend} builds no frame graph)"
        up = NetworkUpscaler(self.name, self.bundle.scale, self.bundle.color_mode, self.run, workers, frame=frame)
        up.frame_path = why if self.bundle.color_mode == "y" else "rgb model"
        return up

    def _frame_fn(self) -> Callable[[np.ndarray], Any] | None:
        """uint8 N x H x W x 3 RGB -> (uint8 N x sH x sW x 3, the network output's sum) through
        this runtime, or ``None`` where the backend builds no frame graph (the numpy path runs)."""
        return None

    def _frame_graph(self) -> bytes:
        """The frame graph around the network this backend runs, serialised."""
        return self._frame_model().SerializeToString()

    def _frame_model(self) -> Any:
        """The frame graph (``onnx.ModelProto``) around the network this backend runs."""
        from ..frame_graph import frame_graph

        return frame_graph(self._frame_network(), self.bundle.scale, **self.frame_options)

    def _frame_network(self) -> Any:
        """The network graph (``onnx.ModelProto``) the frame graph wraps: the file this backend runs."""
        import onnx

        return onnx.load(str(self.bundle.onnx_for(self.backend)))


OptionsT = TypeVar("OptionsT", contravariant=True)


class Backend(Protocol[OptionsT]):
    """A runtime that can open bundles. One instance per backend lives in the dispatch table."""

    name: ClassVar[str]
    extra: ClassVar[str]  # pip extra that installs the runtime: pip install 'sr-edge[<extra>]'
    options_type: ClassVar[type[Any]]  # the frozen dataclass of this backend's options
    precisions: ClassVar[tuple[Precision, ...]]
    default_device: ClassVar[str]

    def available(self) -> bool:
        """True when the runtime (and any device it needs) is importable and usable here."""
        ...

    def open(self, bundle: Bundle, precision: Precision, device: str, options: OptionsT) -> Session:
        """Build (or load from cache) the runtime's model for ``bundle`` and return a session."""
        ...

    def not_native(self, precision: Precision, device: str) -> str | None:
        """One line when this machine's ``device`` would run ``precision`` as another type
        (what :attr:`Session.fallback` will say once a session is open), else None. A cheap
        forecast without building a model, for listings such as ``sr-edge bench --dry-run``."""
        ...


def bundle_spec(bundle: Bundle, shapes: ShapeRange | None = None) -> InputSpec:
    """The input spec a bundle's manifest promises."""
    return InputSpec(name=bundle.input.name, channels=bundle.channels, scale=bundle.scale, shapes=shapes)


def precision_matches_bundle(backend: str, bundle: Bundle, precision: Precision, allowed: tuple[str, ...]) -> None:
    """One-line errors for precisions a backend cannot run, or that the bundle does not hold.

    An int8 (QDQ) bundle runs as int8 only and int8 needs a QDQ bundle: quantisation
    happens at export (``sr-edge quantize``), never silently at load time.
    """
    if precision not in allowed:
        raise SrEdgeError(f"backend {backend} runs precision {', '.join(allowed)}; {precision!r} is not one of them")
    if (precision == "int8") != (bundle.precision == "int8"):
        if precision == "int8":
            raise SrEdgeError(f"{bundle.path}: precision int8 needs an int8 (QDQ) bundle, not {bundle.precision}")
        raise SrEdgeError(f"{bundle.path}: bundle is int8 (QDQ); open it with precision='int8'")
