"""PyTorch eager backend: the reference every other backend is compared against.

It does not read the ONNX graph: it rebuilds the model the bundle was exported from (the
shipped weights of a registered model, or the parent checkpoint, whose sha256 must match
the manifest) and runs its deployment form in eager mode. torch is imported only here,
only when a session is opened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import MissingDependencyError, SrEdgeError
from ..provenance import sha256_file
from ..source import ModelSource, torch_model
from ..types import Precision
from .base import Session, bundle_spec, precision_matches_bundle

if TYPE_CHECKING:
    from ..bundle import Bundle


@dataclass(frozen=True)
class TorchOptions:
    """``checkpoint``: the parent checkpoint when it is not where the manifest says (its
    sha256 must still match). ``threads``: torch intra-op threads (``None``: unchanged).
    ``channels_last``: run in NHWC memory format, PyTorch's advice for CPU convolutions
    (oneDNN then skips a reorder to and from its blocked layout around every conv). On the
    ci-cpu VM it made eager inference of every shipped model 1.15-1.54x faster at 640x360,
    outputs equal within 6e-6 (``docs/studies/layout_check.py``), so the reference peer is
    not handicapped by its layout."""

    checkpoint: str | None = None
    threads: int | None = None
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.threads is not None and (isinstance(self.threads, bool) or int(self.threads) < 1):
            raise SrEdgeError(f"torch threads must be a positive integer, got {self.threads!r}")


def _parent_model(bundle: Bundle, options: TorchOptions) -> Any:
    """The model the bundle was exported from, with its weights."""
    source = bundle.source
    kind = source.get("kind")
    want = source.get("checkpoint_sha256")
    if options.checkpoint is not None or kind == "checkpoint":
        path = Path(options.checkpoint or str(source.get("checkpoint", "")))
        if not path.is_file():
            raise SrEdgeError(
                f"{bundle.path}: the torch backend needs the parent checkpoint {path} (not found); pass checkpoint=PATH"
            )
        if want and sha256_file(path) != want:
            raise SrEdgeError(f"{path}: sha256 does not match the bundle's parent checkpoint; wrong file?")
        model, _ = torch_model(ModelSource("checkpoint", str(path), path=path), bundle.scale)
        return model
    if kind == "shipped":
        name = str(source.get("model", bundle.model))
        model, record = torch_model(ModelSource("zoo", name, name=name), bundle.scale)
        if want and record["checkpoint_sha256"] != want:
            raise SrEdgeError(
                f"{bundle.path}: exported from other {name} x{bundle.scale} weights than this sr-edge ships; "
                "pass checkpoint=PATH"
            )
        return model
    raise SrEdgeError(
        f"{bundle.path}: exported from an in-memory model; the torch backend needs its checkpoint (checkpoint=PATH)"
    )


class TorchSession(Session):
    """The bundle's parent model in PyTorch eager mode."""

    def __init__(self, bundle: Bundle, precision: Precision, device: str, options: TorchOptions) -> None:
        super().__init__("torch", bundle, bundle_spec(bundle), precision, device)
        import torch

        if options.threads is not None:
            torch.set_num_threads(int(options.threads))
        started = time.perf_counter()
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise SrEdgeError(f"torch device must be cpu, cuda or cuda:N, got {device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise SrEdgeError("torch device cuda: no CUDA GPU visible to torch here")
        if precision == "fp16" and dev.type != "cuda":
            raise SrEdgeError("torch runs fp16 only on a CUDA device")
        net = _parent_model(bundle, options).deploy().eval().to(dev)
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self._format = torch.channels_last if options.channels_last else torch.contiguous_format
        self.memory_format = "channels_last" if options.channels_last else "contiguous"
        self._net = net.to(self._dtype, memory_format=self._format)
        self._dev = dev
        self.build_seconds = time.perf_counter() - started

    def _infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(x).to(self._dev, self._dtype)
            y = self._net(t.contiguous(memory_format=self._format))
        return np.ascontiguousarray(y.float().cpu().numpy())

    def _release(self) -> None:
        self._net = None


class TorchBackend:
    """PyTorch eager (``pip install 'sr-edge[train]'``), the reference."""

    name: ClassVar[str] = "torch"
    extra: ClassVar[str] = "train"
    options_type: ClassVar[type[Any]] = TorchOptions
    precisions: ClassVar[tuple[Precision, ...]] = ("fp32", "fp16")
    default_device: ClassVar[str] = "cpu"

    def available(self) -> bool:
        """True when torch is installed (checked without importing it)."""
        import importlib.util

        return importlib.util.find_spec("torch") is not None

    def not_native(self, precision: Precision, device: str) -> str | None:
        """None: eager PyTorch computes in the dtype it is given."""
        return None

    def open(self, bundle: Bundle, precision: Precision, device: str, options: TorchOptions) -> TorchSession:
        """Rebuild the parent model and wrap it as a session."""
        precision_matches_bundle(self.name, bundle, precision, self.precisions)
        if not self.available():
            raise MissingDependencyError("the torch backend", self.extra, "torch")
        return TorchSession(bundle, precision, device, options)
