"""What an export measures on its own graph: PSNR/SSIM through ONNX Runtime, params and MACs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..data.datasets import Dataset, resolve_dataset
from ..errors import DatasetNotFoundError

if TYPE_CHECKING:
    from .exporter import ExportConfig, _Source


def measure_dataset(config: ExportConfig) -> Dataset | None:
    """The dataset the exported graph is measured on (Set5 when found, else the samples), or None."""
    if not config.measure:
        return None
    if config.dataset is not None:
        return resolve_dataset(config.dataset, config.data_root)
    try:
        return resolve_dataset("Set5", config.data_root)
    except DatasetNotFoundError:  # a Set5 folder with no images is an error, not a fallback
        return resolve_dataset(None)


def measure_graph(model_bytes: bytes, src: _Source, dataset: Dataset | None, progress: bool) -> dict[str, Any] | None:
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


def graph_stats(net: Any, channels: int, scale: int) -> dict[str, Any] | None:
    from ..boundary import interrupt_guard
    from ..models import model_stats

    with interrupt_guard() as interrupted:
        try:
            stats = model_stats(net, channels, scale)
        except Exception:  # a module the MAC counter cannot run (e.g. exotic QAT wrappers): leave it out
            interrupted()  # ... but a Ctrl-C that torch turned into an error ends the export
            return None
    return {"params": stats.params, "macs_per_output_pixel": stats.macs_per_output_pixel}
