"""The steps of :func:`sr_edge.compress.quantize` (torch): source, calibration, sensitivity,
fine-tuning, QDQ export, measurement and the bundle. Each step is a function called once."""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import Dataset, resolve_dataset
from ..errors import SrEdgeError
from ..types import ColorMode
from .calib import calibrate, calibration_set, observe
from .fakequant import QuantConv, conv_kernel, execution_order, quant_convs, unwrap_model, wrap_model
from .qdq import LayerQuant, QdqReport, insert_qdq, qlinear_pays
from .quantize import (
    OPENVINO_FILE,
    ORT_FILE,
    LayerSensitivity,
    QuantConfig,
    QuantResult,
    check_target,
    default_run_dir,
    env_threads,
    layer_table,
    resolve_out,
)

QAT_RECORD = "quantization"
LIBRARY = "sr-edge fake quantisers (STE + LSQ scales on torch), QDQ inserted into the exported float graph"


@dataclass
class _Source:
    net: nn.Module  # deploy form, float32, eval mode
    model: str
    scale: int
    channels: int
    color_mode: ColorMode
    family: str
    record: dict[str, Any]


def _source(config: QuantConfig) -> _Source:
    from ..models import model_card
    from ..source import resolve_model, torch_model

    net, record = torch_model(resolve_model(config.source), config.scale)
    card = model_card(str(record["model"]))
    deploy = copy.deepcopy(net.deploy() if hasattr(net, "deploy") else net).float().eval()
    for p in deploy.parameters():
        p.requires_grad_(False)
    return _Source(deploy, card.name, int(record["scale"]), int(net.channels), card.color_mode, card.family, record)


def _datasets(config: QuantConfig) -> tuple[list[Path], list[Dataset]]:
    """(calibration files, evaluation datasets): every missing or empty folder fails here, first."""
    from ..train.data import training_files

    files = training_files(config.calib_data, config.data_root)  # an empty folder: one-line error
    if not files:
        raise SrEdgeError(f"calibration folders {', '.join(config.calib_data)} hold no images")
    evals = [resolve_dataset(name, config.data_root) for name in config.eval_datasets]
    if config.mode == "qat":
        training_files(config.data, config.data_root)
    return files, evals


# --- the fake-quantised model ------------------------------------------------------------


def _wrapped(src: _Source) -> nn.Module:
    net = wrap_model(copy.deepcopy(src.net))
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def _order(net: nn.Module, channels: int) -> list[str]:
    example = torch.rand(1, channels, 24, 20, generator=torch.Generator().manual_seed(0))
    order = execution_order(net, lambda: net(example))
    unused = [n for n, _ in quant_convs(net) if n not in order]
    if unused:
        raise SrEdgeError(f"layers {', '.join(unused)} are not used by the network's forward; cannot quantise them")
    return order


def _set_float(net: nn.Module, float_layers: Sequence[str]) -> None:
    mods = dict(quant_convs(net))
    unknown = sorted(set(float_layers) - set(mods))
    if unknown:
        raise SrEdgeError(f"unknown layer(s) {', '.join(unknown)}; the quantisable layers are {', '.join(mods)}")
    for name, m in mods.items():
        m.set_enabled(name not in float_layers)


def _run_fn(net: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(x)).float().numpy()

    return run


def _torch_psnr(net: nn.Module, src: _Source, dataset: Dataset) -> float:
    from ..evaluate import evaluate
    from ..upscale import NetworkUpscaler

    was = net.training
    net.eval()
    try:
        return evaluate(NetworkUpscaler(src.model, src.scale, src.color_mode, _run_fn(net)), dataset).psnr_y
    finally:
        net.train(was)


def sensitivity(net: nn.Module, src: _Source, dataset: Dataset, order: Sequence[str]) -> list[LayerSensitivity]:
    """PSNR-Y on ``dataset`` with only one layer in int8 (input and weights), for each layer."""
    mods = dict(quant_convs(net))
    state = {n: m.enabled for n, m in mods.items()}
    try:
        _set_float(net, list(mods))
        base = _torch_psnr(net, src, dataset)
        out = []
        for name in order:
            mods[name].set_enabled(True)
            psnr = _torch_psnr(net, src, dataset)
            mods[name].set_enabled(False)
            shape = tuple(int(d) for d in conv_kernel(mods[name].inner)[0].shape)
            out.append(LayerSensitivity(name, shape, round(psnr, 4), round(base - psnr, 4)))
        return out
    finally:
        for n, m in mods.items():
            m.set_enabled(state[n])


def _choose_float(
    net: nn.Module, src: _Source, dataset: Dataset, ranked: Sequence[str], fixed: Sequence[str], budget: float
) -> tuple[list[str], float, float]:
    """Float layers (most sensitive first, after ``fixed``) until the torch-measured drop fits ``budget``.

    Returns (float layers, drop, float PSNR). Raises when only an all-float model fits.
    """
    mods = dict(quant_convs(net))
    _set_float(net, list(mods))
    base = _torch_psnr(net, src, dataset)
    chosen = list(fixed)
    candidates = [n for n in ranked if n not in chosen]
    while True:
        _set_float(net, chosen)
        drop = base - _torch_psnr(net, src, dataset)
        if drop <= budget:
            return chosen, drop, base
        if len(candidates) <= 1:
            left = candidates[0] if candidates else "none"
            raise SrEdgeError(
                f"--max-drop-db {budget:g} cannot be met: with only {left} in int8 the {dataset.name} drop is "
                f"{drop:.3f} dB; allow a larger drop or use the fp32 bundle"
            )
        chosen.append(candidates.pop(0))


# --- fine-tuning -------------------------------------------------------------------------


def _train_config(config: QuantConfig, src: _Source, run_dir: Path) -> Any:
    from ..train import TrainConfig

    overrides = src.record.get("overrides") or {}
    return TrainConfig(
        model=src.model,
        scale=src.scale,
        data=tuple(config.data),
        out=str(run_dir),
        steps=config.steps,
        batch_size=config.batch_size,
        patch_size=config.patch_size,
        lr=config.lr,
        lr_min=config.lr_min,
        schedule="cosine",
        loss="l1",
        val_every=config.val_every,
        ckpt_every=config.ckpt_every,
        log_every=config.log_every,
        seed=config.seed,
        device=config.device,
        threads=config.threads,
        data_root=config.data_root,
        skip_small=True,  # T91 holds images smaller than an x4 HR patch
        model_options=tuple(sorted(dict(overrides).items())),
    )


def _loss(teacher: nn.Module, weight: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(1 - weight) * L1(sr, hr) + weight * L1(sr, teacher(lr))``: the float model's own output
    as the target keeps the fine-tune from drifting from the fp32 model it is measured against."""

    def loss(sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        value = F.l1_loss(sr, hr) * (1.0 - weight) if weight < 1 else sr.new_zeros(())
        if weight > 0:
            with torch.no_grad():
                target = teacher(lr)
            value = value + weight * F.l1_loss(sr, target)
        return value

    return loss


def _fine_tune(
    config: QuantConfig,
    src: _Source,
    qnet: nn.Module,
    run_dir: Path,
    record: dict[str, Any],
    resume: bool,
    progress: bool,
) -> tuple[Any, nn.Module]:
    from ..checkpoint import load_checkpoint
    from ..models import load_state
    from ..train import TrainHooks, train

    template = copy.deepcopy(qnet)
    teacher = copy.deepcopy(src.net).eval()
    hooks = TrainHooks(
        model=lambda: copy.deepcopy(template),  # deterministic: the calibrated (or bare) model, copied
        loss=_loss(teacher, config.distill),
        meta={QAT_RECORD: record},
    )
    result = train(_train_config(config, src, run_dir), resume=resume, progress=progress, hooks=hooks)
    tuned = copy.deepcopy(template)
    load_state(tuned, load_checkpoint(result.last).state_dict, str(result.last))
    return result, tuned.eval()


def _saved_record(run_dir: Path) -> dict[str, Any]:
    from ..checkpoint import load_checkpoint

    last = run_dir / "last.safetensors"
    if not last.is_file():
        raise SrEdgeError(f"nothing to resume: {last} does not exist")
    record = load_checkpoint(last).meta.get(QAT_RECORD)
    if not isinstance(record, dict):
        raise SrEdgeError(f"{last}: not a quantisation-aware fine-tune (no {QAT_RECORD!r} record)")
    return record


# --- export and measurement ----------------------------------------------------------------


def _layers(net: nn.Module, order: Sequence[str], float_layers: Sequence[str]) -> list[LayerQuant]:
    mods = dict(quant_convs(net))
    out = []
    for name in order:
        m: QuantConv = mods[name]
        w = conv_kernel(m.inner)[0].detach().float().numpy()
        out.append(
            LayerQuant(
                name,
                w,
                m.aq.scale,
                m.wq.scales.numpy(),
                input_offset=int(m.aq.offset),
                int8=name not in float_layers,
                output_scale=m.oq.scale,
                qlinear=qlinear_pays(w.shape),
            )
        )
    return out


@torch.no_grad()
def _output_grids(net: nn.Module, images: Sequence[np.ndarray]) -> None:
    """Re-calibrate the conv-output grids (the ORT placement's own) on the tuned int8 model."""
    from .calib import _scale_from

    mods = [m for _, m in quant_convs(net)]
    observers = observe(net, [m.oq for m in mods], images)
    for m, o in zip(mods, observers, strict=True):
        m.oq.set_scale(_scale_from(o, "mse"))


def float_graph(net: nn.Module, channels: int, scale: int, opset: int, exporter: str = "auto") -> tuple[Any, str]:
    """(ONNX float graph, exporter used) of a deploy-form module, as ``sr-edge export`` writes it."""
    from ..export.convert import to_onnx
    from ..export.graph import postprocess

    with torch.no_grad():
        raw, exporter = to_onnx(copy.deepcopy(net).float().eval(), channels, exporter, opset)  # type: ignore[arg-type]
        model, _ = postprocess(raw, scale, channels, True)
    return model, exporter


def _evaluate(run: Callable[[np.ndarray], np.ndarray], src: _Source, datasets: Sequence[Dataset]) -> dict[str, Any]:
    from ..evaluate import evaluate
    from ..upscale import NetworkUpscaler

    out = {}
    for ds in datasets:
        r = evaluate(NetworkUpscaler(src.model, src.scale, src.color_mode, run), ds)
        out[ds.name] = {"psnr_y": round(r.psnr_y, 4), "ssim_y": round(r.ssim_y, 6)}
    return out


def _backends() -> list[str]:
    from ..backends import available_backends

    return [b for b in ("ort", "openvino") if b in available_backends()]


def measure_bundle(folder: Path, src: _Source, datasets: Sequence[Dataset], precision: str) -> dict[str, Any]:
    """PSNR/SSIM of a bundle folder through each CPU runtime here (ORT, OpenVINO): each opens the
    file its placement names, exactly as ``load_bundle`` does for a user."""
    from ..backends import load_bundle
    from ..backends.ort_backend import OrtOptions, ort_run_fn
    from ..bundle import read_bundle

    out: dict[str, Any] = {}
    for backend in _backends():
        with load_bundle(folder, backend=backend, precision=precision) as session:
            out[backend] = _evaluate(session.run, src, datasets)
    # TensorRT's own file, where it is another: its QDQ arithmetic run by ONNX Runtime's CPU
    # provider (no TensorRT here), so its numbers are the graph's, not a TensorRT engine's
    bundle = read_bundle(folder)
    trt = bundle.onnx_for("tensorrt")
    if trt != bundle.onnx_for("ort"):
        out[f"{trt.name}@ort"] = _evaluate(ort_run_fn(trt, OrtOptions(), "cpu")[0], src, datasets)
    return out


def measure_graph(model: Any, src: _Source, datasets: Sequence[Dataset]) -> dict[str, Any]:
    """fp32 reference: the float graph through ORT and OpenVINO (f32 hint)."""
    from ..backends.ort_backend import OrtOptions, ort_run_fn

    data = model.SerializeToString()
    out = {"ort": _evaluate(ort_run_fn(data, OrtOptions(), "cpu")[0], src, datasets)}
    if "openvino" in _backends():
        from ..backends.openvino_backend import shared_core

        core = shared_core()
        compiled = core.compile_model(core.read_model(data), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()

        def run(x: np.ndarray) -> np.ndarray:
            request.infer({0: x})
            return np.array(request.get_output_tensor(0).data, copy=True)

        out["openvino"] = _evaluate(run, src, datasets)
    return out


# A runtime keeps the file placed for it unless another of the bundle's files measures better
# by more than this through it, on this machine: OpenVINO's integer kernels on AMD Zen 3
# (AVX2, no VNNI) lost 1.7 dB on FSRCNN x2 with QDQ on the conv inputs and nothing with ORT's
# placement; ORT's own-grid outputs lost 0.34 dB on ECBSR x4 where the inputs placement did not.
PLACEMENT_MARGIN_DB = 0.02


def choose_placements(folder: Path, src: _Source, dataset: Dataset) -> dict[str, dict[str, Any]]:
    """For each CPU runtime here, PSNR-Y on ``dataset`` of every ONNX file of the bundle through it,
    and the file chosen: its own placement unless another beats it by :data:`PLACEMENT_MARGIN_DB`."""
    from ..backends import load_bundle
    from ..bundle import MANIFEST
    from ..devices.probe import int8_cpu_class, probe_machine

    manifest = json.loads((folder / MANIFEST).read_text())
    if not manifest.get("placements"):  # one file that every runtime runs (a library's PTQ): nothing to choose
        return {}
    files = list(manifest["files"])
    # each runtime's own placement (what quantize placed for it), not what an earlier choice on
    # another CPU class left in "placements"
    own = dict(manifest["placements"])
    own.update({b: f for b, f in (("openvino", OPENVINO_FILE), ("ort", ORT_FILE)) if f in files})
    facts = probe_machine()
    cls = int8_cpu_class()
    cpu = f"{facts.cpu} ({facts.cores} cpus; {'VNNI' if cls == 'vnni' else 'no VNNI'})"
    by_cpu = manifest.pop("placements_by_cpu", None)  # it would override the file under test
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    out: dict[str, dict[str, Any]] = {}
    for backend in _backends():
        scores: dict[str, float] = {}
        for name in files:
            _update_manifest(folder, {"placements": {backend: name}})
            with load_bundle(folder, backend=backend, precision="int8") as session:
                scores[name] = _evaluate(session.run, src, [dataset])[dataset.name]["psnr_y"]
        best = max(scores, key=lambda n: scores[n])
        mine = own[backend]
        chosen = best if scores[best] > scores[mine] + PLACEMENT_MARGIN_DB else mine
        out[backend] = {"psnr_y": scores, "dataset": dataset.name, "placed": mine, "chosen": chosen, "cpu": cpu}
    restore = {"placements": manifest["placements"], **({"placements_by_cpu": by_cpu} if by_cpu else {})}
    _update_manifest(folder, restore)
    return out


def record_placements(folder: Path, choice: dict[str, dict[str, Any]]) -> None:
    """Write ``choose_placements``'s result into the bundle's manifest under this CPU's class:
    ``placements_by_cpu[class]`` (what :meth:`~sr_edge.bundle.Bundle.onnx_for` runs on CPUs of
    that class) and ``quantization.placement_choice[class]`` (every score, the choice, the CPU)."""
    from ..bundle import MANIFEST
    from ..devices.probe import int8_cpu_class

    cls = int8_cpu_class()
    doc = json.loads((folder / MANIFEST).read_text())
    by_cpu = {**doc.get("placements_by_cpu", {}), cls: {b: c["chosen"] for b, c in choice.items()}}
    quant = doc.get("quantization", {})
    quant["placement_choice"] = {**quant.get("placement_choice", {}), cls: choice}
    _update_manifest(folder, {"placements_by_cpu": by_cpu, "quantization": quant})


def drops(int8: dict[str, Any], fp32: dict[str, Any]) -> dict[str, dict[str, float]]:
    """int8 minus fp32 PSNR-Y per backend and dataset (negative: a loss); a ``file@backend``
    entry is compared with that backend's fp32."""
    out = {}
    for b, by_set in int8.items():
        ref = fp32.get(b, fp32.get(b.rsplit("@", 1)[-1], {}))
        out[b] = {d: round(m["psnr_y"] - ref[d]["psnr_y"], 4) for d, m in by_set.items() if d in ref}
    return out


# --- the bundle ----------------------------------------------------------------------------


def _manifest(
    src: _Source,
    config: QuantConfig,
    graphs: dict[str, Any],
    placements: dict[str, str],
    quant: dict[str, Any],
    float_net: nn.Module,
    exporter: str,
) -> dict[str, Any]:
    from ..bundle import FORMAT, FORMAT_VERSION, INPUT_NAME, OUTPUT_NAME, graph_receptive_field
    from ..export.exporter import _EXPORT_VERSIONS, _export_time
    from ..export.graph import graph_sha256
    from ..export.measure import graph_stats
    from ..provenance import git_info, library_versions
    from ..version import __version__

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
        "precision": "int8",
        **({"placements": placements} if placements else {}),
        "graph_sha256": graph_sha256(graphs["model.onnx"]),
        "source": src.record,
        "export": {
            "sr_edge_version": __version__,
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "time": _export_time(),
            "exporter": exporter,
            "simplifier": "onnxslim (float graph), then sr-edge QDQ insertion",
            "config": {"opset": config.opset, "exporter": config.exporter, "simplify": True},
            "versions": library_versions((*_EXPORT_VERSIONS, "openvino", "nncf")),
        },
        "stats": graph_stats(float_net, src.channels, src.scale),
        "quantization": quant,
    }
    # the float graph's reach is the int8 graph's (QDQ, Sub and Pad add none); recorded so tiling
    # need not walk the QDQ graph
    manifest["receptive_field"] = graph_receptive_field(graphs["float"])
    return manifest


def write_bundle(
    target: Path, files: dict[str, Any], manifest: dict[str, Any], overwrite: bool, finish: Callable[[Path], None]
) -> Path:
    """Write ``files`` (name -> ONNX model) and ``manifest`` into a temp folder, call
    ``finish(tmp)`` (measurement; it may add to the manifest file), then rename into place."""
    import onnx

    from ..bundle import MANIFEST, metadata_props
    from ..export.exporter import _publish
    from ..provenance import current_umask, sha256_file, temp_beside

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(target, folder=True)
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        entries = {}
        for name, model in files.items():
            onnx.helper.set_model_props(model, metadata_props(manifest))
            path = tmp / name
            path.write_bytes(model.SerializeToString(deterministic=True))
            entries[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        manifest["files"] = entries
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        finish(tmp)
        _publish(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _update_manifest(folder: Path, extra: dict[str, Any]) -> None:
    from ..bundle import MANIFEST

    path = folder / MANIFEST
    doc = json.loads(path.read_text())
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    path.write_text(json.dumps(doc, indent=2) + "\n")


def _note(progress: bool, text: str) -> None:
    if progress:
        print(f"sr-edge quantize: {text}", file=sys.stderr, flush=True)


# --- the run -------------------------------------------------------------------------------


def run(config: QuantConfig, resume: bool, progress: bool) -> QuantResult:
    env_threads(config)
    src = _source(config)
    target = resolve_out(config, src.model, src.scale)
    if not config.sensitivity:
        check_target(target, config.overwrite)
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(src.model, src.scale)
    if config.mode == "qat" and not config.sensitivity:
        last = run_dir / "last.safetensors"
        if resume and not last.is_file():
            raise SrEdgeError(f"nothing to resume: {last} does not exist")
        if not resume and last.exists():
            raise SrEdgeError(f"{run_dir} already holds a fine-tune; pass --resume to continue it or another --run-dir")
    elif resume:
        raise SrEdgeError("--resume continues a QAT fine-tune; PTQ has nothing to resume")
    calib_files, evals = _datasets(config)
    if config.ptq_engine != "sr-edge":
        from .ptq import baseline

        return baseline(config, src, calib_files, evals, target, progress)

    qnet = _wrapped(src)
    order = _order(qnet, src.channels)
    images = calibration_set(calib_files, src.scale, src.color_mode, config.calib_images)
    saved = _saved_record(run_dir) if resume else None
    if saved is None:
        _note(progress, f"calibrating {len(order)} layers on {len(images)} whole images ({config.calib_method})")
        stats = calibrate(qnet, images, config.calib_method)
    else:
        stats = saved.get("calibration", {})
    _set_float(qnet, config.float_layers)

    sens: list[LayerSensitivity] = []
    if config.sensitivity or (config.max_drop_db is not None and saved is None):
        _note(progress, f"sensitivity: {len(order)} layers on {evals[0].name}")
        sens = sensitivity(qnet, src, evals[0], order)
        if config.sensitivity:
            return QuantResult(None, src.model, src.scale, config.mode, sensitivity=tuple(sens))
        if config.mode == "qat":  # an impossible budget fails before any fine-tuning (calibrated estimate)
            ranked = [s.name for s in sorted(sens, key=lambda s: -s.drop_db)]
            _choose_float(qnet, src, evals[0], ranked, config.float_layers, float(config.max_drop_db or 0))
            _set_float(qnet, config.float_layers)

    # the float graph as exported (the fp32 reference), and the layers whose outputs the ORT
    # file quantises on their own grids (after PReLU): a fine-tune trains those grids too
    reference, exporter = float_graph(src.net, src.channels, src.scale, config.opset, config.exporter)
    own_outputs = insert_qdq(reference, _layers(qnet, order, config.float_layers), "ort")[1].own_output_grids
    record: dict[str, Any] = {
        "config": config.to_json(),
        "layers": order,
        "float_layers": list(config.float_layers),
        "calibration": stats,
        "source": src.record,
    }
    train_info: dict[str, Any] | None = None
    if config.mode == "qat":
        if saved is not None:
            changed = _resume_conflicts(saved.get("config", {}), record["config"])
            if changed:
                raise SrEdgeError(f"cannot resume {run_dir}: options differ from the saved run: {', '.join(changed)}")
        if saved is not None:
            record = saved
        for name, m in quant_convs(qnet):
            m.oq.enabled = not config.fixed_outputs and name in own_outputs
        _note(progress, f"QAT fine-tune: {config.steps} steps in {run_dir}")
        result, qnet = _fine_tune(config, src, qnet, run_dir, record, resume, progress)
        if result.interrupted:
            return QuantResult(None, src.model, src.scale, "qat", run_dir=run_dir, interrupted=True, step=result.step)
        from ..checkpoint import training_stage
        from ..provenance import sha256_file

        ckpt_meta = json.loads(result.last.with_suffix(".json").read_text())
        train_info = {
            **training_stage(ckpt_meta),
            "checkpoint": str(result.last.resolve()),
            "checkpoint_sha256": sha256_file(result.last),
            "best_val_psnr_y": result.best_val_psnr,
        }
    for m in (m for _, m in quant_convs(qnet)):
        m.oq.enabled = False
    qnet.eval()
    if config.mode == "ptq" or config.fixed_outputs:  # a fine-tune's trained output grids are kept
        _output_grids(qnet, images)

    float_layers = list(config.float_layers)
    if config.max_drop_db is not None:
        ranked = [s.name for s in sorted(sensitivity(qnet, src, evals[0], order), key=lambda s: -s.drop_db)]
        float_layers, _, _ = _choose_float(qnet, src, evals[0], ranked, config.float_layers, config.max_drop_db)
    _set_float(qnet, float_layers)

    float_net = unwrap_model(copy.deepcopy(qnet)).eval()
    tuned, _ = float_graph(float_net, src.channels, src.scale, config.opset, config.exporter)
    _note(progress, "measuring fp32 through ORT and OpenVINO")
    fp32 = measure_graph(reference, src, evals)

    def build(float_layers: Sequence[str]) -> tuple[dict[str, Any], dict[str, QdqReport], list[LayerQuant]]:
        layers = _layers(qnet, order, float_layers)
        graphs, reports = {"float": tuned}, {}
        for placement, name in (("inputs", "model.onnx"), ("openvino", OPENVINO_FILE), ("ort", ORT_FILE)):
            graphs[name], reports[placement] = insert_qdq(tuned, layers, placement)  # type: ignore[arg-type]
        return graphs, reports, layers

    placements = {"tensorrt": "model.onnx", "openvino": OPENVINO_FILE, "ort": ORT_FILE}
    while True:
        graphs, reports, layers = build(float_layers)
        quant = {
            "mode": config.mode,
            "library": LIBRARY,
            "scheme": "int8: activations per tensor on (q + k) * s grids (k = 0 symmetric; k = 128 for tensors "
            "that are never negative: the image, Relu outputs), weights symmetric per output channel (axis 0)",
            "ort_output_grids": "fine-tuned" if config.mode == "qat" and not config.fixed_outputs else "calibrated",
            "placements": {
                "model.onnx": "TensorRT: symmetric int8 QDQ on conv inputs, int8 weights per channel (axis 0), "
                "float bias and outputs; offset grids as Sub + Pad",
                OPENVINO_FILE: "OpenVINO: the same, offset grids as uint8 zero points",
                ORT_FILE: "ONNX Runtime: uint8 activations; QDQ on conv outputs + int32 bias where QLinearConv pays",
            },
            "reports": {name: r.to_json() for name, r in reports.items()},
            "layers": layer_table(layers),
            "float_layers": list(float_layers),
            "max_drop_db": config.max_drop_db,
            "calibration": {"method": config.calib_method, "images": len(images), "folders": list(config.calib_data)},
            "fine_tune": train_info,
            "fp32_metrics": fp32,
        }
        manifest = _manifest(src, config, graphs, placements, quant, float_net, exporter)
        measured: dict[str, Any] = {}
        finish = functools.partial(_measure_into, measured=measured, src=src, evals=evals, fp32=fp32, config=config)
        files = {name: graphs[name] for name in ("model.onnx", OPENVINO_FILE, ORT_FILE)}
        try:
            path = write_bundle(target, files, manifest, config.overwrite, finish)
            break
        except _OverBudget as e:
            remaining = [n for n in order if n not in float_layers]
            ranked = [s.name for s in sorted(sensitivity(qnet, src, evals[0], order), key=lambda s: -s.drop_db)]
            nxt = next((n for n in ranked if n in remaining), None)
            if nxt is None or len(remaining) <= 1:
                raise SrEdgeError(
                    f"--max-drop-db {config.max_drop_db:g} cannot be met through the runtimes ({e}); nothing written"
                ) from None
            float_layers.append(nxt)
            _set_float(qnet, float_layers)
    return QuantResult(
        path,
        src.model,
        src.scale,
        config.mode,
        metrics={"int8": measured, "fp32": fp32, "drop_db": drops(measured, fp32)},
        sensitivity=tuple(sens),
        float_layers=tuple(float_layers),
        run_dir=run_dir if config.mode == "qat" else None,
        step=train_info.get("steps") if train_info else None,
    )


class _OverBudget(Exception):
    pass


def _measure_into(
    tmp: Path,
    measured: dict[str, Any],
    src: _Source,
    evals: Sequence[Dataset],
    fp32: dict[str, Any],
    config: QuantConfig,
) -> None:
    """Measure the finished temp bundle through each runtime; refuse it over the drop budget."""
    _note(True, "choosing each CPU runtime's file by what it measures here")
    choice = choose_placements(tmp, src, evals[0])
    if choice:
        _update_manifest(tmp, {"placements": {b: c["chosen"] for b, c in choice.items()}})
        record_placements(tmp, choice)
    _note(True, "measuring the int8 bundle through each runtime")
    measured.update(measure_bundle(tmp, src, evals, "int8"))
    over = _over_budget(measured, fp32, evals[0].name, config.max_drop_db)
    if over:
        raise _OverBudget(over)
    first = evals[0].name
    ort_first = measured["ort"][first]
    metrics = {
        "backend": "ort",
        "dataset": first,
        "images": len(evals[0]),
        "scale": src.scale,
        "protocol": "MATLAB bicubic LR; PSNR/SSIM on Y (BT.601), scale-pixel border shaved",
        "psnr_y": ort_first["psnr_y"],
        "ssim_y": ort_first["ssim_y"],
    }
    quant = {"metrics": measured, "drop_db": drops(measured, fp32)}
    _update_manifest(tmp, {"metrics": metrics, "quantization": quant})  # merged: placement_choice stays


# options a resumed fine-tune may change (the trainer checks its own: steps may grow)
_RESUMABLE = frozenset({"overwrite", "threads", "val_every", "ckpt_every", "log_every", "steps", "out", "device"})


def _resume_conflicts(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    now = json.loads(json.dumps(now))  # tuples as the checkpoint's JSON holds them
    return sorted(k for k in now if k not in _RESUMABLE and saved.get(k) != now[k])


def _over_budget(measured: dict[str, Any], fp32: dict[str, Any], dataset: str, budget: float | None) -> str:
    if budget is None:
        return ""
    lost = {b: -by_set[dataset] for b, by_set in drops(measured, fp32).items() if dataset in by_set}
    return ", ".join(f"{b} {d:.3f} dB" for b, d in lost.items() if d > budget)


def sensitivity_json(rows: Sequence[LayerSensitivity]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
