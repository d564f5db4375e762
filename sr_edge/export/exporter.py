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

Determinism: the same weights, versions and options give the same graph structure; the
manifest records ``graph_sha256`` (the graph without its metadata) as a record of the file.
A re-export on another CPU class may round a weight differently (ECBSR's collapse is done
in float64 and rounded once, which makes that rare, not impossible), so re-exports are
compared with :func:`~sr_edge.export.graph.compare_graphs`: structure exactly, weights
within a tolerance.

Modules: :mod:`.convert` (torch -> ONNX), :mod:`.graph` (post-processing, comparison),
:mod:`.measure` (PSNR/SSIM, MACs); this one resolves the source and publishes the bundle.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bundle import (
    FORMAT,
    FORMAT_VERSION,
    INPUT_NAME,
    MANIFEST,
    MODEL_FILE,
    OUTPUT_NAME,
    ColorMode,
    graph_receptive_field,
    metadata_props,
)
from ..data.datasets import check_data_root
from ..data.io import check_out_folder
from ..errors import MissingDependencyError, SrEdgeError
from ..provenance import (
    current_umask,
    git_info,
    library_versions,
    naming,
    now_utc,
    sha256_file,
    sweep_stale,
    temp_beside,
)
from ..version import __version__
from .convert import Exporter, to_onnx
from .graph import graph_precision, graph_sha256, postprocess
from .measure import graph_stats, measure_dataset, measure_graph

if TYPE_CHECKING:
    pass

DEFAULT_OPSET = 18
OPSETS = (17, 18, 19, 20)
_EXPORT_VERSIONS = ("sr-edge", "torch", "onnx", "onnxscript", "onnxslim", "onnxruntime", "numpy")


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

    from ..source import resolve_model, torch_model

    model, provenance = torch_model(resolve_model(source), scale)
    name = str(provenance["model"])
    card_facts = _card_facts(name)
    if card_facts is None:  # pragma: no cover - torch_model checks registration
        raise SrEdgeError(f"{source}: model {name!r} is not registered in this sr-edge")
    family, mode = card_facts
    return _Source(model, name, family, color_mode or mode, model.channels, int(provenance["scale"]), provenance)


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
    measure_on = measure_dataset(config)  # a missing dataset fails before the export work
    _require_export_stack()
    import onnx
    import torch

    src = _resolve_source(source, scale, model_name, color_mode)
    with torch.no_grad():
        net = src.net.deploy() if hasattr(src.net, "deploy") else src.net
        # A copy: exporting must not move, cast or switch to eval the caller's module.
        net = copy.deepcopy(net).float().eval().cpu()
        raw, exporter_used = to_onnx(net, src.channels, config.exporter, config.opset)
        model, simplifier = postprocess(raw, src.scale, src.channels, config.simplify)
        stats = graph_stats(net, src.channels, src.scale)
    bare_sha = graph_sha256(model)
    metrics = measure_graph(model.SerializeToString(deterministic=True), src, measure_on, progress)
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
        # LR pixels an output pixel reads around its own: the overlap exact tiling needs (None: unknown)
        "receptive_field": graph_receptive_field(model),
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
    with naming(target):
        target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)  # the temp folder a killed earlier export of it left
    tmp = temp_beside(target, folder=True)
    try:
        with naming(target, tmp, tmp / MODEL_FILE, tmp / MANIFEST):  # a full disk names the bundle, not the temp
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
