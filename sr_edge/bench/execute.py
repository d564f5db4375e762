"""Running one row: build the contender's session, time it, measure its quality, cut its crop.

Each row: build the session (timed; peak RSS from here on), latency at every profile
resolution (end-to-end frame and network-only, :mod:`sr_edge.bench.timing`), then
quality through the same session on each dataset, then one crop for the visual sheet.
Whatever goes wrong inside a row becomes that row's status and reason, never the run's end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..data.datasets import Dataset
from ..errors import SrEdgeError, one_line
from .contenders import Contender, Deployed, NotNative
from .crops import CropSheet
from .planning import Plan
from .results import Quality, Row
from .rounds import measured


def _quality(deployed: Deployed, datasets: Sequence[Dataset]) -> dict[str, Quality]:
    from ..evaluate import evaluate

    out = {}
    for ds in datasets:
        r = evaluate(deployed.upscaler, ds)
        out[ds.name] = Quality(
            round(r.psnr_y, 4), round(r.ssim_y, 5), len(r.images), {i.name: round(i.psnr_y, 4) for i in r.images}
        )
    return out


def import_runtimes(plan_: Plan, kept: Mapping[str, Row]) -> None:
    """Import every runtime the remaining rows need, before the first row.

    A Ctrl-C that lands while an extension package is first imported is not a clean
    ``KeyboardInterrupt``: onnxruntime (through numpy) turns it into an ImportError, which
    mid-run would skip a row as "not installed" and end the run as complete, and onnx's
    protobuf module can crash the process. Importing up front leaves only pure-Python
    work and runtime calls in the window a user interrupts.
    """
    todo = [c for c in plan_.contenders if c.id not in kept]
    for c in todo:
        c.skip_reason()  # imports the backend's runtime
    if any(c.peer is None or c.peer == "torch" for c in todo):
        import onnx  # noqa: F401  (MAC counting of every bundle row)


def run_row(
    c: Contender,
    plan_: Plan,
    crops: CropSheet | None = None,
) -> Row:
    """Measure one contender; errors become a ``failed`` row with a one-line reason."""
    started = time.perf_counter()
    base: dict[str, Any] = {
        "id": c.id,
        "variant": c.variant,
        "model": c.model,
        "family": c.family,
        "scale": c.scale,
        "backend": c.backend,
        "precision": c.precision,
        "peer": c.peer,
    }
    try:
        base["bundle"] = c.bundle_info()
    except Exception as e:  # a missing file is reported by skip_reason / open
        base["bundle"] = {"error": one_line(str(e))}
    reason = c.skip_reason()
    if reason is not None:
        return Row(**base, status="skipped", reason=reason, seconds=round(time.perf_counter() - started, 3))
    peak = plan_.profile.hardware.peak(c.precision)
    try:
        with measured(c, plan_, peak) as (deployed, timings, memory):
            quality = _quality(deployed, plan_.datasets) if plan_.settings.quality else {}
            crop_name = crops.write_sr(c.id, c.scale, deployed.upscaler) if crops is not None else None
    except NotNative as e:
        return Row(**base, status="skipped", reason=one_line(str(e)), seconds=round(time.perf_counter() - started, 3))
    except SrEdgeError as e:
        return Row(**base, status="failed", reason=one_line(str(e)), seconds=round(time.perf_counter() - started, 3))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # one runtime's bug must not end the whole matrix
        reason = f"{type(e).__name__}: {one_line(str(e))}"[:500]
        return Row(**base, status="failed", reason=reason, seconds=round(time.perf_counter() - started, 3))
    compute = {
        "macs_per_lr_pixel": deployed.macs_per_lr_pixel,
        "unit": "GOP/s" if c.precision == "int8" else "GFLOP/s",
        "peak_gops": peak,
    }
    return Row(
        **base,
        status="ok",
        runtime=deployed.runtime,
        build_s=round(deployed.build_s, 4),
        latency=timings,
        quality=quality,
        memory=memory.to_json(),
        compute=compute,
        crop=crop_name,
        seconds=round(time.perf_counter() - started, 3),
    )
