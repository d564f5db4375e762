"""Run a bundle on any runtime through one protocol: ``load_bundle(path, backend=...)``.

Backends (the dispatch table in :mod:`sr_edge.backends.api`)::

    name       extra       devices                      precisions
    ort        (core)      cpu, cuda[:N], auto          fp32, int8 (QDQ bundle), fp16 (cuda + TensorRT EP)
    openvino   openvino    cpu, gpu, npu, auto          fp32, fp16, bf16, int8 (QDQ bundle)
    tensorrt   tensorrt    cuda[:N]                     fp32, fp16, bf16, int8 (QDQ bundle)
    torch      train       cpu, cuda[:N]                fp32, fp16 (cuda); the reference, rebuilt
                                                        from the bundle's parent weights

API (stable; the benchmark harness calls it)::

    load_bundle(path, backend="ort", precision=None, device=None, **options) -> Session
        path       bundle folder (or its manifest.json / model.onnx); files are verified
                   against the manifest's sha256 first
        precision  None = the bundle's own (fp32, or int8 for a QDQ bundle)
        device     None = the backend's default (cpu; cuda for tensorrt)
        options    fields of OrtOptions / OpenVinoOptions / TensorRTOptions / TorchOptions,
                   e.g. threads=2, cache_dir=..., profile=ShapeRange(min, opt, max);
                   an unknown name is an error
    load_upscaler(...)  same arguments -> an image Upscaler (NetworkUpscaler)

    Session: run(x) -> y  (x: N x C x H x W float32 in [0, 1]; y: N x C x sH x sW float32)
             input_spec (InputSpec: name, channels, scale, dtype, layout, shapes bounds)
             precision, device, build_seconds (session creation / compile time), backend,
             bundle, name, upscaler(), close(); a context manager

    available_backends() -> names usable here;  get_backend(name) -> Backend
    Backend: name, extra, available(), open(bundle, precision, device, options)

A missing runtime raises :class:`~sr_edge.errors.MissingDependencyError` naming
``pip install 'sr-edge[<extra>]'``; a wrong input shape or dtype raises a one-line
:class:`~sr_edge.errors.SrEdgeError` before the runtime is called. Loading a bundle and
running it on ort, openvino or tensorrt never imports torch.
"""

from __future__ import annotations

from ..types import PRECISIONS, Precision
from .api import BACKENDS, DEFAULT_BACKEND, available_backends, get_backend, list_backends, load_bundle, load_upscaler
from .base import Backend, InputSpec, Session, ShapeRange, parse_shape
from .openvino_backend import OpenVinoOptions
from .ort_backend import OrtOptions
from .tensorrt_backend import TensorRTOptions
from .torch_backend import TorchOptions

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "PRECISIONS",
    "Backend",
    "InputSpec",
    "OpenVinoOptions",
    "OrtOptions",
    "Precision",
    "Session",
    "ShapeRange",
    "TensorRTOptions",
    "TorchOptions",
    "available_backends",
    "get_backend",
    "list_backends",
    "load_bundle",
    "load_upscaler",
    "parse_shape",
]
