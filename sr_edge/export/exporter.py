"""``export_bundle``: a zoo model (shipped weights, a checkpoint or an in-memory module) to a bundle.

Pipeline: the model's deployment form (``model.deploy()``: ECBSR collapses its branches)
-> ONNX with dynamic batch, height and width -> onnxslim (constant folding, Conv+Add
fusion into standard ops only, so OpenVINO and TensorRT read the same file) -> the ONNX
checker (full check) and strict shape inference -> PSNR/SSIM measured on the exported
graph with ONNX Runtime -> ``model.onnx`` + ``manifest.json`` written into a temp folder
and renamed into place (an existing bundle is only replaced with ``overwrite``).

Exporter choice: torch 2.13's dynamo exporter (``torch.export`` + onnxscript) is the
default. On the zoo it gives the cleanest graphs (FSRCNN's sub-pixel deconvolution
kernel is folded into one constant instead of ~50 Gather/Reshape/Pad nodes; no Identity
or Constant nodes), it is the exporter PyTorch maintains, and it emits opset 18 natively.
Its one known failure here is torch.ao FakeQuantize modules (QAT models); with
``exporter="auto"`` such a model falls back to the legacy TorchScript exporter, and the
manifest records which exporter ran.

Opset: 18 by default, the lowest the dynamo exporter emits without a version
conversion; ONNX Runtime >= 1.14, OpenVINO >= 2023.0 and TensorRT >= 10.0 (opsets 9-20)
all read it. 17 to 20 are accepted.

Determinism: the same weights, versions and options give a byte-identical graph; the
manifest records ``graph_sha256`` (the graph without its metadata) so a re-export can be
compared even though export time and commit differ.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import __version__
from ..data.datasets import Dataset, check_data_root, resolve_dataset
from ..data.io import check_out_folder
from ..errors import DatasetNotFoundError, MissingDependencyError, SrEdgeError, one_line
from ..provenance import current_umask, git_info, library_versions, now_utc, sha256_file, temp_beside
from .bundle import (
    FORMAT,
    FORMAT_VERSION,
    INPUT_NAME,
    MANIFEST,
    MODEL_FILE,
    OUTPUT_NAME,
    ColorMode,
    check_not_training_run,
    metadata_props,
)

if TYPE_CHECKING:
    import onnx

DEFAULT_OPSET = 18
OPSETS = (17, 18, 19, 20)
Exporter = Literal["auto", "dynamo", "legacy"]
_EXPORT_VERSIONS = ("sr-edge", "torch", "onnx", "onnxscript", "onnxslim", "onnxruntime", "numpy")
# Example input for tracing: batch 2 and unequal, non-square sizes so that torch.export
# neither specialises the batch to 1 nor assumes height == width.
_EXAMPLE_BATCH, _EXAMPLE_H, _EXAMPLE_W = 2, 32, 28


@dataclass(frozen=True)
class ExportConfig:
    """How a bundle is exported (recorded in the manifest so a re-export can repeat it)."""

    opset: int = DEFAULT_OPSET
    exporter: Exporter = "auto"
    simplify: bool = True
    measure: bool = True
    dataset: str | None = None  # None: Set5 when found, else the embedded samples
    data_root: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.opset, bool) or self.opset not in OPSETS:
            raise SrEdgeError(f"opset must be one of {', '.join(map(str, OPSETS))}, got {self.opset!r}")
        if self.exporter not in ("auto", "dynamo", "legacy"):
            raise SrEdgeError(f"exporter must be auto, dynamo or legacy, got {self.exporter!r}")
        check_data_root(self.data_root)  # a wrong root must not fall back to the samples in silence


@dataclass(frozen=True)
class _Source:
    net: Any  # torch.nn.Module, deployment form, eval mode, float32 on CPU
    model: str
    family: str
    color_mode: ColorMode
    channels: int
    scale: int
    record: dict[str, Any]


def _require_export_stack() -> None:
    import importlib.util

    for module in ("torch", "onnxscript"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError("sr-edge export", "train", module)


def _card_facts(name: str) -> tuple[str, ColorMode] | None:
    from ..models import list_models, model_card

    if name not in list_models():
        return None
    card = model_card(name)
    return card.family, card.color_mode


def _resolve_source(source: Any, scale: int | None, model_name: str | None, color_mode: ColorMode | None) -> _Source:
    """(deployment module, identity, provenance record) for any kind of source."""
    import torch

    from ..types import check_scale

    if isinstance(source, torch.nn.Module):
        name = model_name or getattr(source, "sr_edge_name", None)
        if not name:
            raise SrEdgeError("exporting an in-memory model needs model_name= (a registered name or a label)")
        net_scale = getattr(source, "scale", None)
        if net_scale is None:
            raise SrEdgeError(f"{name}: the module has no .scale; zoo models (SRModel) carry one")
        if scale is not None and check_scale(scale) != net_scale:
            raise SrEdgeError(f"{name}: the module upscales x{net_scale}, not x{scale}")
        channels = getattr(source, "channels", None)
        if not isinstance(channels, int):
            raise SrEdgeError(f"{name}: the module has no integer .channels; zoo models (SRModel) carry one")
        facts = _card_facts(str(name))
        mode = color_mode or (facts[1] if facts else None)
        if mode is None:
            raise SrEdgeError(f"{name} is not a registered model: pass color_mode='y' or 'rgb'")
        family = facts[0] if facts else type(source).__name__
        record = {"kind": "module", "model": str(name), "scale": int(net_scale), "class": type(source).__name__}
        return _Source(source, str(name), family, mode, channels, int(net_scale), record)

    text = os.fspath(source)
    path = Path(text)
    if path.suffix == ".safetensors" or path.is_file():
        from ..checkpoint import model_from_checkpoint

        model, ckpt = model_from_checkpoint(path, scale)
        facts = _card_facts(ckpt.model)
        if facts is None:
            raise SrEdgeError(f"{path}: checkpoint model {ckpt.model!r} is not registered in this sr-edge")
        record = {
            "kind": "checkpoint",
            "model": ckpt.model,
            "scale": ckpt.scale,
            "overrides": ckpt.overrides,
            "checkpoint": str(path.resolve()),
            "checkpoint_sha256": sha256_file(path),
        }
        if "step" in ckpt.meta:
            record["step"] = ckpt.meta["step"]
        return _Source(model, ckpt.model, facts[0], color_mode or facts[1], model.channels, ckpt.scale, record)

    from ..models import create_model, model_card

    check_not_training_run(path)
    card = model_card(text)  # one-line error for an unknown name
    if scale is None:
        shipped = sorted(card.weights)
        if len(shipped) != 1:
            have = ", ".join(f"x{s}" for s in shipped) or "none"
            raise SrEdgeError(f"{text}: pass --scale (shipped weights: {have})")
        scale = shipped[0]
    model = create_model(text, scale, pretrained=True)
    weights = card.weights_file(scale)
    record = {
        "kind": "shipped",
        "model": text,
        "scale": scale,
        "checkpoint": f"sr_edge/weights/{weights.name}",
        "checkpoint_sha256": card.weights[scale],
    }
    return _Source(model, text, card.family, color_mode or card.color_mode, model.channels, scale, record)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
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
    with _quiet_exporters():
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
    with _quiet_exporters(), tempfile.TemporaryDirectory(prefix="sr-edge-export-") as tmp:
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


def _to_onnx(net: Any, channels: int, config: ExportConfig) -> tuple[onnx.ModelProto, str]:
    """(graph, exporter used)."""
    import torch

    example = torch.rand(_EXAMPLE_BATCH, channels, _EXAMPLE_H, _EXAMPLE_W, generator=torch.Generator().manual_seed(0))
    if config.exporter in ("auto", "dynamo"):
        try:
            return _export_dynamo(net, example, config.opset), "torch.onnx dynamo"
        except Exception as e:
            if config.exporter == "dynamo":
                raise SrEdgeError(f"the dynamo ONNX exporter failed: {one_line(str(e))[:300]}") from None
            reason = re.sub(r"\x1b\[[0-9;]*m", "", one_line(f"{type(e).__name__}: {e}"))[:200]
            label = f"torch.onnx legacy (dynamo failed: {reason})"
    else:
        label = "torch.onnx legacy"
    try:
        return _export_legacy(net, example, config.opset), label
    except Exception as e:
        raise SrEdgeError(f"the legacy ONNX exporter failed: {one_line(str(e))[:300]}") from None


def _name_dims(model: onnx.ModelProto, scale: int, channels: int) -> None:
    """Canonical shapes: lr [batch, C, height, width] -> sr [batch, C, s*height, s*width]."""
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise SrEdgeError(
            f"exported graph has {len(model.graph.input)} inputs and {len(model.graph.output)} outputs; expected 1 each"
        )
    names = {
        INPUT_NAME: ("batch", channels, "height", "width"),
        OUTPUT_NAME: ("batch", channels, f"{scale}*height", f"{scale}*width"),
    }
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise SrEdgeError(f"exported {value.name!r} has rank {len(dims)}, expected 4 (NCHW)")
        for dim, want in zip(dims, names[value.name], strict=True):
            if isinstance(want, int):
                dim.Clear()
                dim.dim_value = want
            else:
                dim.Clear()
                dim.dim_param = want


def _postprocess(model: onnx.ModelProto, scale: int, channels: int, simplify: bool) -> tuple[onnx.ModelProto, str]:
    """Simplify, name dims, check and shape-infer. Returns (graph, simplifier used)."""
    import onnx

    simplifier = "none"
    if simplify:
        try:
            import onnxslim
        except ImportError:
            raise MissingDependencyError("graph simplification in sr-edge export", "train", "onnxslim") from None
        with _quiet_exporters():
            model = onnxslim.slim(model)
        simplifier = f"onnxslim {library_versions(('onnxslim',)).get('onnxslim', '?')}"
    names = [v.name for v in model.graph.input], [v.name for v in model.graph.output]
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise SrEdgeError(f"exported graph has inputs/outputs {names}, expected ['lr'] / ['sr']")
    _name_dims(model, scale, channels)
    # Drop the exporters' intermediate shape annotations (their symbolic names, e.g.
    # "TruncToInt(2.0*ToFloat(height))", are noise) and let ONNX re-infer them.
    del model.graph.value_info[:]
    model.doc_string = ""
    model.graph.doc_string = ""
    model.producer_name = "sr-edge"
    model.producer_version = __version__
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise SrEdgeError(f"exported graph fails the ONNX checker: {one_line(str(e))[:300]}") from None
    return model, simplifier


def graph_sha256(model: onnx.ModelProto) -> str:
    """sha256 of the graph without its metadata: equal for re-exports of the same weights."""
    import onnx

    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.metadata_props[:]
    return hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()


def graph_precision(model: onnx.ModelProto) -> Literal["fp32", "fp16", "int8"]:
    """int8 for an explicit-quantisation (QDQ) graph, fp16 for a half-precision input, else fp32."""
    import onnx

    ops = {n.op_type for n in model.graph.node}
    if {"QuantizeLinear", "DequantizeLinear"} & ops:
        return "int8"
    if model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
        return "fp16"
    return "fp32"


def _measure_dataset(config: ExportConfig) -> Dataset | None:
    """The dataset the exported graph is measured on (Set5 when found, else the samples), or None."""
    if not config.measure:
        return None
    if config.dataset is not None:
        return resolve_dataset(config.dataset, config.data_root)
    try:
        return resolve_dataset("Set5", config.data_root)
    except DatasetNotFoundError:  # a Set5 folder with no images is an error, not a fallback
        return resolve_dataset(None)


def _measure(model_bytes: bytes, src: _Source, dataset: Dataset | None, progress: bool) -> dict[str, Any] | None:
    """PSNR/SSIM of the exported graph (ONNX Runtime, CPU) on ``dataset`` (None: not measured)."""
    from ..backends.ort_backend import OrtOptions, ort_run_fn
    from ..evaluate import evaluate
    from ..upscale import NetworkUpscaler

    if dataset is None:
        return None
    run, _ = ort_run_fn(model_bytes, OrtOptions(), "cpu")
    upscaler = NetworkUpscaler(src.model, src.scale, src.color_mode, run)
    result = evaluate(upscaler, dataset, progress=progress)
    return {
        "backend": "ort",
        "dataset": dataset.name,
        "images": len(dataset),
        "scale": src.scale,
        "protocol": "MATLAB bicubic LR; PSNR/SSIM on Y (BT.601), scale-pixel border shaved",
        "psnr_y": round(result.psnr_y, 4),
        "ssim_y": round(result.ssim_y, 6),
    }


def _stats(net: Any, channels: int, scale: int) -> dict[str, Any] | None:
    from ..models import model_stats

    try:
        stats = model_stats(net, channels, scale)
    except Exception:  # a module the MAC counter cannot run (e.g. exotic QAT wrappers): leave it out
        return None
    return {"params": stats.params, "macs_per_output_pixel": stats.macs_per_output_pixel}


def _export_time() -> str:
    """Now, or SOURCE_DATE_EPOCH (the reproducible-builds convention) when set."""
    import datetime as dt

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).isoformat(timespec="seconds")
    return now_utc()


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished temp folder into place; an old bundle is removed only after."""
    if not out.exists():
        os.replace(tmp, out)
        return
    if not overwrite:
        raise SrEdgeError(f"{out} already exists; pass --overwrite to replace it")
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_bundle(
    source: Any,
    out: str | os.PathLike[str],
    scale: int | None = None,
    opset: int = DEFAULT_OPSET,
    *,
    exporter: Exporter = "auto",
    simplify: bool = True,
    measure: bool = True,
    dataset: str | None = None,
    data_root: str | None = None,
    overwrite: bool = False,
    model_name: str | None = None,
    color_mode: ColorMode | None = None,
    progress: bool = False,
) -> Path:
    """Export ``source`` to the bundle folder ``out`` and return ``out``.

    ``source``: a checkpoint path (``.safetensors``), a registered model name (its shipped
    weights for ``scale``), or an in-memory zoo model (``model_name`` labels it;
    ``color_mode`` is needed when the name is not registered). ``opset`` defaults to 18
    (see the module docstring). ``measure`` runs the exported graph with ONNX Runtime on
    ``dataset`` (default: Set5 when found, else the embedded samples) and records
    PSNR/SSIM. ``out`` is written atomically; an existing bundle is replaced only with
    ``overwrite``.
    """
    config = ExportConfig(
        opset=opset, exporter=exporter, simplify=simplify, measure=measure, dataset=dataset, data_root=data_root
    )
    target = Path(out)
    if target.exists() and not (target / MANIFEST).is_file():  # a user's file or folder: never replaced
        raise SrEdgeError(f"{target} exists and is not a bundle; choose another --out")
    if target.exists() and not overwrite:
        raise SrEdgeError(f"{target} already exists; pass --overwrite to replace it")
    check_out_folder(target)
    measure_on = _measure_dataset(config)  # a missing dataset fails before the export work
    _require_export_stack()
    import onnx
    import torch

    src = _resolve_source(source, scale, model_name, color_mode)
    with torch.no_grad():
        net = src.net.deploy() if hasattr(src.net, "deploy") else src.net
        # A copy: exporting must not move, cast or switch to eval the caller's module.
        net = copy.deepcopy(net).float().eval().cpu()
        raw, exporter_used = _to_onnx(net, src.channels, config)
        model, simplifier = _postprocess(raw, src.scale, src.channels, config.simplify)
        stats = _stats(net, src.channels, src.scale)
    bare_sha = graph_sha256(model)
    metrics = _measure(model.SerializeToString(deterministic=True), src, measure_on, progress)
    git = git_info()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": src.model,
        "family": src.family,
        "scale": src.scale,
        "color_mode": src.color_mode,
        "channels": src.channels,
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW",
            "dtype": "float32",
            "range": [0.0, 1.0],
            "shape": ["batch", src.channels, "height", "width"],
        },
        "output": {
            "name": OUTPUT_NAME,
            "layout": "NCHW",
            "dtype": "float32",
            "range": [0.0, 1.0],
            "shape": ["batch", src.channels, f"{src.scale}*height", f"{src.scale}*width"],
        },
        "opset": config.opset,
        "precision": graph_precision(model),
        "graph_sha256": bare_sha,
        "source": src.record,
        "export": {
            "sr_edge_version": __version__,
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "time": _export_time(),
            "exporter": exporter_used,
            "simplifier": simplifier,
            "config": asdict(config),
            "versions": library_versions(_EXPORT_VERSIONS),
        },
        "stats": stats,
        "metrics": metrics,
    }
    onnx.helper.set_model_props(model, metadata_props(manifest))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(target, folder=True)
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide the bundle from other users
        onnx_path = tmp / MODEL_FILE
        onnx_path.write_bytes(model.SerializeToString(deterministic=True))
        manifest["files"] = {MODEL_FILE: {"sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _publish(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
