"""``quantize``: int8 bundles from a zoo model or checkpoint, by QAT or PTQ.

The pipeline (:func:`quantize`)::

    source (zoo name / checkpoint, pruned ones included, via sr_edge.source.torch_model)
      -> deploy form (ECBSR collapses to plain convs)
      -> fake-quantised copy (fakequant.wrap_model: int8 input per tensor, weights per channel)
      -> ranges calibrated on whole representative images (calib.calibrate)
      -> [--sensitivity / --max-drop-db: per-layer PSNR, the most sensitive layers kept float]
      -> QAT: fine-tuned through the project's trainer (sr_edge.train, TrainHooks), resumable
      -> the float deploy graph of the tuned weights, exported once (sr_edge.export.convert)
      -> QDQ inserted per runtime (qdq.insert_qdq): model.onnx for TensorRT (symmetric int8,
         check-trt clean), model-openvino.onnx, model-ort.onnx
      -> each file measured through its own runtime (PSNR-Y on Set5 / Set14) against fp32
      -> one bundle folder, written atomically: export/<model>/x<s>-int8/

``mode="ptq"`` stops after calibration (the same placements, no fine-tuning);
``ptq_engine="ort"`` / ``"nncf"`` are the baselines the report compares against: ONNX
Runtime's ``quantize_static`` and NNCF 3.4's ``nncf.quantize``, each writing its own QDQ
graph of the fp32 bundle, run by every backend (:mod:`.ptq`).

Why our own fake quantisers rather than a library: see docs/compression.md (measured).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from ..errors import SrEdgeError
from ..types import check_scale

if TYPE_CHECKING:
    from .qdq import LayerQuant

Mode = Literal["qat", "ptq"]
PtqEngine = Literal["sr-edge", "ort", "nncf"]
CalibMethod = Literal["mse", "max", "percentile"]
Exporter = Literal["auto", "dynamo", "legacy"]
ORT_FILE = "model-ort.onnx"
OPENVINO_FILE = "model-openvino.onnx"
DEFAULT_DATA = ("T91", "BSD200")
DEFAULT_EVAL = ("Set5", "Set14")


def _either(values: tuple[str, ...]) -> str:
    return f"{', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else values[0]


@dataclass(frozen=True)
class QuantConfig:
    """Everything that defines an int8 quantisation run (validated on construction).

    ``source``: a zoo name (its shipped weights at ``scale``) or a ``.safetensors``
    checkpoint. ``out``: the bundle folder (default ``export/<model>/x<scale>-int8``);
    ``run_dir``: the QAT run folder (default ``runs/quant/<model>_x<scale>``), where the
    fine-tune checkpoints so that ``resume`` continues it exactly.

    Calibration: ``calib_images`` whole images from ``calib_data`` (training folders by
    default), ranges by ``calib_method``. QAT: ``steps`` of ``batch_size`` LR patches of
    ``patch_size`` px from ``data``, Adam at ``lr`` (cosine to ``lr_min``), loss
    ``(1 - distill)`` x L1 to the HR patch + ``distill`` x L1 to the float model's own
    output (1: match the fp32 model, which the drop is measured against). ``sensitivity``: report
    each layer's PSNR when it alone is int8 and stop. ``max_drop_db``: keep the most
    sensitive layers in float until the Set5 drop (the first of ``eval_datasets``) fits.
    ``float_layers``: layers kept in float whatever the drop. ``eval_datasets``: where the
    bundle's quality is measured, through each placement's own runtime. ``exporter``: the
    torch ONNX exporter of the float graph (``auto``: dynamo, as ``sr-edge export``).
    """

    source: str
    scale: int | None = None
    mode: Mode = "qat"
    out: str | None = None
    run_dir: str | None = None
    calib_data: tuple[str, ...] = DEFAULT_DATA
    calib_images: int = 32
    calib_method: CalibMethod = "mse"
    data: tuple[str, ...] = DEFAULT_DATA
    data_root: str | None = None
    steps: int = 1000
    batch_size: int = 16
    patch_size: int = 40
    lr: float = 5e-4
    lr_min: float = 1e-6
    distill: float = 1.0
    val_every: int = 1000
    ckpt_every: int = 200
    log_every: int = 50
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    eval_datasets: tuple[str, ...] = DEFAULT_EVAL
    sensitivity: bool = False
    max_drop_db: float | None = None
    float_layers: tuple[str, ...] = ()
    ptq_engine: PtqEngine = "sr-edge"
    fixed_outputs: bool = False
    opset: int = 18
    exporter: Exporter = "auto"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise SrEdgeError("quantize needs a source: a zoo model name or a .safetensors checkpoint")
        if self.scale is not None:
            check_scale(self.scale)
        if self.mode not in get_args(Mode):
            raise SrEdgeError(f"mode must be {_either(get_args(Mode))}, got {self.mode!r}")
        if self.calib_method not in get_args(CalibMethod):
            raise SrEdgeError(f"calib_method must be {_either(get_args(CalibMethod))}, got {self.calib_method!r}")
        if self.ptq_engine not in get_args(PtqEngine):
            raise SrEdgeError(f"ptq_engine must be {_either(get_args(PtqEngine))}, got {self.ptq_engine!r}")
        if self.ptq_engine != "sr-edge" and self.mode != "ptq":
            raise SrEdgeError(f"ptq_engine {self.ptq_engine} is a post-training baseline: use it with mode ptq")
        if self.ptq_engine != "sr-edge" and (self.max_drop_db is not None or self.sensitivity or self.float_layers):
            raise SrEdgeError("sensitivity, max_drop_db and float_layers work with sr-edge's own quantisers only")
        for name in ("calib_images", "steps", "batch_size", "val_every", "ckpt_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SrEdgeError(f"{name} must be a positive integer, got {value!r}")
        if self.patch_size < 8:
            raise SrEdgeError(f"patch_size must be at least 8, got {self.patch_size}")
        if not 0 < self.lr < 1 or not 0 <= self.lr_min <= self.lr:
            raise SrEdgeError(
                f"learning rates must satisfy 0 <= lr_min <= lr < 1, got lr={self.lr}, lr_min={self.lr_min}"
            )
        if not 0 <= self.distill <= 1:
            raise SrEdgeError(f"distill must be in [0, 1], got {self.distill}")
        if self.max_drop_db is not None and not (0 <= self.max_drop_db < 100):
            raise SrEdgeError(f"max_drop_db must be a number of dB >= 0, got {self.max_drop_db}")
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads <= 0):
            raise SrEdgeError(f"threads must be positive, got {self.threads}")
        if not self.calib_data:
            raise SrEdgeError("no calibration data given; pass --calib-data with one or more image folders")
        if not self.eval_datasets:
            raise SrEdgeError("no evaluation dataset given")
        if self.exporter not in get_args(Exporter):
            raise SrEdgeError(f"exporter must be {_either(get_args(Exporter))}, got {self.exporter!r}")
        if self.opset not in (17, 18, 19, 20):
            raise SrEdgeError(f"opset must be one of 17, 18, 19, 20, got {self.opset!r}")
        for name in ("calib_data", "data", "eval_datasets", "float_layers"):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name)))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer's PSNR with only it in int8 (the rest float), and its drop from float."""

    name: str
    shape: tuple[int, ...]
    psnr_y: float
    drop_db: float


@dataclass(frozen=True)
class QuantResult:
    """What a run produced: the bundle (None for a sensitivity report), and what was measured."""

    bundle: Path | None
    model: str
    scale: int
    mode: str
    metrics: dict[str, Any] = field(default_factory=dict)
    sensitivity: tuple[LayerSensitivity, ...] = ()
    float_layers: tuple[str, ...] = ()
    run_dir: Path | None = None
    interrupted: bool = False
    step: int | None = None


def default_out(model: str, scale: int) -> Path:
    """``export/<model>/x<scale>-int8`` in the project (the bench's bundles folder)."""
    from ..paths import PROJECT_ROOT

    return PROJECT_ROOT / "export" / model / f"x{scale}-int8"


def default_run_dir(model: str, scale: int) -> Path:
    return Path("runs") / "quant" / f"{model}_x{scale}"


def quantize(config: QuantConfig, resume: bool = False, progress: bool = True) -> QuantResult:
    """Quantise ``config.source`` to int8 and write its bundle (see the module docstring).

    ``resume`` continues an interrupted QAT fine-tune from ``run_dir``'s last checkpoint
    (the same config; the result equals an uninterrupted run's). Every user error is a
    one-line :class:`SrEdgeError` raised before anything is written.
    """
    from .pipeline import run

    return run(config, resume=resume, progress=progress)


def layer_table(layers: list[LayerQuant]) -> list[dict[str, Any]]:
    """The manifest's per-layer record: name, kernel shape, precision, input grid."""
    return [
        {
            "layer": q.name,
            "kernel": list(q.weight.shape),
            "precision": "int8" if q.int8 else "fp32",
            "input_scale": float(q.input_scale),
            "input_offset": int(q.input_offset),
        }
        for q in layers
    ]


def resolve_out(config: QuantConfig, model: str, scale: int) -> Path:
    return Path(config.out) if config.out else default_out(model, scale)


def check_target(target: Path, overwrite: bool) -> None:
    """One-line errors for an out folder that exists (without overwrite) or is not a bundle."""
    from ..bundle import MANIFEST
    from ..data.io import check_out_folder

    if target.exists() and not (target / MANIFEST).is_file():
        raise SrEdgeError(f"{target} exists and is not a bundle; choose another --out")
    if target.exists() and not overwrite:
        raise SrEdgeError(f"{target} already exists; pass --overwrite to replace it")
    check_out_folder(target)


def env_threads(config: QuantConfig) -> None:
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(config.threads))


__all__ = ["LayerSensitivity", "QuantConfig", "QuantResult", "quantize"]
