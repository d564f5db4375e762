"""torch module -> ONNX graph, with torch 2.13's dynamo exporter or the legacy one (see
:mod:`sr_edge.export.exporter` for why dynamo is the default and when legacy runs)."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..bundle import INPUT_NAME, OUTPUT_NAME
from ..errors import SrEdgeError, one_line

if TYPE_CHECKING:
    import onnx

Exporter = Literal["auto", "dynamo", "legacy"]
# Example input for tracing: batch 2 and unequal, non-square sizes so that torch.export
# neither specialises the batch to 1 nor assumes height == width.
_EXAMPLE_BATCH, _EXAMPLE_H, _EXAMPLE_W = 2, 32, 28


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """Silence the exporters' chatter (missing torchvision ops, deprecation notices)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    sink = io.StringIO()  # a failed torch.export prints the whole graph; the error message says enough
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_dynamo(net: Any, example: Any, opset: int) -> onnx.ModelProto:
    import inspect

    import torch

    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    params = [p.name for p in inspect.signature(net.forward).parameters.values()]
    arg = params[0] if params else "x"  # dynamic_shapes is keyed by the forward argument's name
    with quiet_exporters():
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={arg: dims},
            optimize=True,
            verbose=False,
            report=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise SrEdgeError("the dynamo exporter returned nothing")
    return program.model_proto


def _export_legacy(net: Any, example: Any, opset: int) -> onnx.ModelProto:
    import onnx
    import torch

    axes = {0: "batch", 2: "height", 3: "width"}
    with quiet_exporters(), tempfile.TemporaryDirectory(prefix="sr-edge-export-") as tmp:
        path = Path(tmp) / "legacy.onnx"
        torch.onnx.export(
            net,
            (example,),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            do_constant_folding=True,
        )
        return onnx.load(str(path))


def to_onnx(net: Any, channels: int, exporter: Exporter, opset: int) -> tuple[onnx.ModelProto, str]:
    """(graph, exporter used)."""
    import torch

    from ..boundary import interrupt_guard

    example = torch.rand(_EXAMPLE_BATCH, channels, _EXAMPLE_H, _EXAMPLE_W, generator=torch.Generator().manual_seed(0))
    if exporter in ("auto", "dynamo"):
        # torch.export can turn a Ctrl-C that lands inside it into an error of its own (or
        # swallow it): the guard re-raises it, so it is never taken for a dynamo failure
        # that falls back to the legacy exporter, nor for a legacy failure.
        with interrupt_guard() as interrupted:
            try:
                graph = _export_dynamo(net, example, opset)
            except Exception as e:
                interrupted()
                if exporter == "dynamo":
                    raise SrEdgeError(f"the dynamo ONNX exporter failed: {one_line(str(e))[:300]}") from None
                reason = re.sub(r"\x1b\[[0-9;]*m", "", one_line(f"{type(e).__name__}: {e}"))[:200]
                label = f"torch.onnx legacy (dynamo failed: {reason})"
            else:
                interrupted()
                return graph, "torch.onnx dynamo"
    else:
        label = "torch.onnx legacy"
    with interrupt_guard() as interrupted:
        try:
            graph = _export_legacy(net, example, opset)
        except Exception as e:
            interrupted()
            raise SrEdgeError(f"the legacy ONNX exporter failed: {one_line(str(e))[:300]}") from None
        interrupted()
        return graph, label
