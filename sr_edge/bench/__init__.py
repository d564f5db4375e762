"""Quality next to measured latency, per target device: ``benchmark``, ``write_report``, ``compare``.

``benchmark(profile, settings, out=...)`` measures every bundle under ``export/`` on every
backend and precision of a :class:`~sr_edge.devices.DeviceProfile`, beside the peers
(bicubic, PyTorch eager on the same weights, OpenCV dnn_superres), and writes one results
JSON (:mod:`sr_edge.bench.results`). ``write_report`` turns it into Markdown, a Pareto
plot and a visual comparison sheet; ``compare`` checks it against a baseline. Nothing
here imports torch unless a PyTorch-eager row runs.
"""

from __future__ import annotations

from .compare import Regression, compare
from .planning import Plan, plan
from .report import write_report
from .results import SCHEMA, SCHEMA_VERSION, Quality, Results, Row, Timing, load_results
from .runner import benchmark
from .settings import BenchSettings
from .timing import LatencyPlan, LatencyStats, measure_latency

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "BenchSettings",
    "LatencyPlan",
    "LatencyStats",
    "Plan",
    "Quality",
    "Regression",
    "Results",
    "Row",
    "Timing",
    "benchmark",
    "compare",
    "load_results",
    "measure_latency",
    "plan",
    "write_report",
]
