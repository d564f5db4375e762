"""The dispatch table and ``load_bundle``: the only place a backend is chosen by name."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, cast

from ..errors import MissingDependencyError, SrEdgeError
from ..types import PRECISIONS, Precision
from .base import Backend, Session
from .openvino_backend import OpenVinoBackend
from .ort_backend import OrtBackend
from .tensorrt_backend import TensorRTBackend
from .torch_backend import TorchBackend

if TYPE_CHECKING:
    from ..upscale import NetworkUpscaler

DEFAULT_BACKEND = "ort"

# The one dispatch table. Order = preference when listing.
BACKENDS: dict[str, Backend[Any]] = {
    b.name: b for b in (OrtBackend(), OpenVinoBackend(), TensorRTBackend(), TorchBackend())
}


def list_backends() -> list[str]:
    """Names of every backend sr-edge knows (installed or not)."""
    return list(BACKENDS)


def get_backend(name: str) -> Backend[Any]:
    """A backend by name (one-line error naming the known ones)."""
    try:
        return BACKENDS[name.lower()]
    except (KeyError, AttributeError):
        raise SrEdgeError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None


def available_backends() -> list[str]:
    """Backends usable here (runtime importable and, for TensorRT, a CUDA device present)."""
    return [name for name, b in BACKENDS.items() if b.available()]


def make_options(backend: Backend[Any], options: dict[str, Any]) -> Any:
    """The backend's typed options from keyword arguments (unknown keys are an error)."""
    known = [f.name for f in dataclasses.fields(backend.options_type)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SrEdgeError(
            f"unknown option(s) {', '.join(unknown)} for backend {backend.name}; known: {', '.join(known)}"
        )
    return backend.options_type(**options)


def _check_precision(precision: str | None, default: Precision) -> Precision:
    if precision is None:
        return default
    if precision not in PRECISIONS:
        raise SrEdgeError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return cast(Precision, precision)


def load_bundle(
    path: str | os.PathLike[str],
    backend: str = DEFAULT_BACKEND,
    precision: str | None = None,
    device: str | None = None,
    **options: Any,
) -> Session:
    """Open the bundle at ``path`` on ``backend`` and return a :class:`Session`.

    ``precision``: fp32, fp16, bf16 or int8 (``None``: the bundle's own, fp32 for a float
    bundle, int8 for a QDQ one). ``device``: backend-specific (``None``: the backend's
    default: cpu, or cuda for TensorRT). ``options``: fields of the backend's options
    class (:class:`OrtOptions`, :class:`OpenVinoOptions`, :class:`TensorRTOptions`,
    :class:`TorchOptions`). The bundle's files are verified against its manifest first.
    """
    from ..bundle import read_bundle

    chosen = get_backend(backend)
    opts = make_options(chosen, options)
    bundle = read_bundle(path)
    run_precision = _check_precision(precision, "int8" if bundle.precision == "int8" else "fp32")
    try:
        return chosen.open(bundle, run_precision, device or chosen.default_device, opts)
    except ImportError as e:  # a runtime missing, or present but lacking a native library
        if not chosen.extra:
            raise SrEdgeError(
                f"the {chosen.name} backend needs {e.name}, a core dependency: reinstall sr-edge"
            ) from None
        raise MissingDependencyError(f"the {chosen.name} backend", chosen.extra, e.name) from None


def load_upscaler(
    path: str | os.PathLike[str],
    backend: str = DEFAULT_BACKEND,
    precision: str | None = None,
    device: str | None = None,
    **options: Any,
) -> NetworkUpscaler:
    """A bundle as an image :class:`~sr_edge.upscale.Upscaler` (scale and colour mode from its manifest)."""
    return load_bundle(path, backend, precision, device, **options).upscaler()
