"""Post-training baselines: ONNX Runtime's ``quantize_static`` and NNCF's ``nncf.quantize``.

Each quantises the same float graph the fp32 bundle holds, calibrated on the same whole
images as sr-edge's own quantisers, and writes one QDQ graph (``model.onnx``) that every
backend runs: what a user who reaches for the library's PTQ gets, so the report can show
what QAT buys. Settings follow DESIGN.md's measurements: ORT with ``quant_pre_process``
first, QDQ format, int8 per-channel symmetric weights and symmetric activations,
percentile calibration (best of ORT's methods on ESPCN); NNCF's performance preset
(symmetric) on its ONNX backend, so the result is a bundle like any other.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MissingDependencyError, SrEdgeError, one_line
from ..provenance import library_versions
from .calib import calibration_set
from .quantize import QuantConfig, QuantResult

if TYPE_CHECKING:
    import onnx

    from ..data.datasets import Dataset
    from .pipeline import _Source


def ort_static(
    model: onnx.ModelProto, images: Sequence[np.ndarray], reduce_range: bool | None = None
) -> tuple[onnx.ModelProto, str]:
    """ORT ``quantize_static`` QDQ graph of ``model`` (and a description of the settings).

    ``reduce_range`` (7-bit weights; default: where the CPU has no VNNI) follows ORT's advice for
    x86 without VNNI, whose u8s8 kernels (``vpmaddubsw``) saturate: on AMD Zen 3 full 8-bit
    weights took ESPCN x2 through ORT's fused QLinearConv to 19.6 dB against the float output,
    44.3 dB with the same graph unfused; with 7-bit weights 43.3 dB either way.
    """
    if reduce_range is None:
        from ..devices.probe import int8_cpu_class

        reduce_range = int8_cpu_class() != "vnni"
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # ORT's histogram calibrator stacks every image's activations, so the images must share a
    # size: each is centre-cropped to the smallest height and width among them (centres, not
    # corners: DESIGN.md measured 11 dB lost to ranges from dark corner crops)
    h = min(x.shape[2] for x in images)
    w = min(x.shape[3] for x in images)
    crops = [
        x[:, :, (x.shape[2] - h) // 2 : (x.shape[2] - h) // 2 + h, (x.shape[3] - w) // 2 : (x.shape[3] - w) // 2 + w]
        for x in images
    ]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(np.ascontiguousarray(c) for c in crops)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.items, None)
            return None if x is None else {"lr": x}

    with tempfile.TemporaryDirectory(prefix="sr-edge-ptq-") as tmp:
        src, pre, out = Path(tmp) / "float.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        # quantize_static prints its calibration progress to stdout, which --json owns
        with contextlib.redirect_stdout(sys.stderr):
            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=reduce_range,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibMaxIntermediateOutputs": 2},
            )
        quantized = onnx.load(str(out))
    version = library_versions(("onnxruntime",)).get("onnxruntime", "?")
    bits = "7-bit (reduce_range: this CPU has no VNNI)" if reduce_range else "int8"
    return quantized, (
        f"onnxruntime {version} quantize_static: quant_pre_process, QDQ, {bits} per-channel symmetric weights, "
        f"symmetric int8 activations, percentile calibration on centre crops of {w}x{h} LR px"
    )


def nncf_ptq(model: onnx.ModelProto, images: Sequence[np.ndarray]) -> tuple[onnx.ModelProto, str]:
    """NNCF ``nncf.quantize`` (ONNX backend, performance preset) QDQ graph of ``model``."""
    try:
        import nncf
    except ImportError:
        raise MissingDependencyError("the NNCF PTQ baseline", "train", "nncf") from None
    import logging

    logging.getLogger("nncf").setLevel(logging.ERROR)
    dataset = nncf.Dataset(list(images), lambda x: {"lr": x})
    quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(images))
    return quantized, f"nncf {nncf.__version__} quantize (ONNX backend, performance preset: symmetric int8)"


def baseline(
    config: QuantConfig,
    src: _Source,
    calib_files: Sequence[Path],
    evals: Sequence[Dataset],
    target: Path,
    progress: bool,
) -> QuantResult:
    """Quantise with a library's PTQ, measure through each runtime, write the bundle."""
    import functools

    from .pipeline import _manifest, _measure_into, _note, drops, float_graph, measure_graph, write_bundle

    reference, exporter = float_graph(src.net, src.channels, src.scale, config.opset, config.exporter)
    images = calibration_set(calib_files, src.scale, src.color_mode, config.calib_images)
    _note(progress, f"{config.ptq_engine} PTQ on {len(images)} whole images")
    try:
        model, library = (ort_static if config.ptq_engine == "ort" else nncf_ptq)(reference, images)
    except SrEdgeError:
        raise
    except Exception as e:  # the library's own failure on this graph: one line naming it
        raise SrEdgeError(f"{config.ptq_engine} PTQ failed on {src.model}: {one_line(str(e))[:300]}") from None
    fp32 = measure_graph(reference, src, evals)
    quant = {
        "mode": "ptq",
        "library": library,
        "engine": config.ptq_engine,
        "placements": {"model.onnx": f"{config.ptq_engine}'s own QDQ placement, run by every backend"},
        "calibration": {"images": len(images), "folders": list(config.calib_data)},
        "fp32_metrics": fp32,
    }
    manifest = _manifest(src, config, {"model.onnx": model, "float": reference}, {}, quant, src.net, exporter)
    measured: dict[str, Any] = {}
    finish = functools.partial(_measure_into, measured=measured, src=src, evals=evals, fp32=fp32, config=config)
    path = write_bundle(target, {"model.onnx": model}, manifest, config.overwrite, finish)
    return QuantResult(
        path, src.model, src.scale, "ptq", metrics={"int8": measured, "fp32": fp32, "drop_db": drops(measured, fp32)}
    )
