"""Options of the latency regression suite (``pytest benchmarks/``).

``--sr-device NAME``   device profile (default: $SR_EDGE_DEVICE, else the detected one)
``--sr-bundles DIR``   bundles to time (default: export/ of the checkout)
``--sr-baseline PATH`` sr-edge results JSON to compare with (default:
                       benchmarks/baselines/<device>.json when it exists; ``none`` to skip)
``--sr-tolerance F``   allowed rise of the median over the baseline's p50 (default 0.10)
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sr-edge latency")
    group.addoption("--sr-device", default=None, help="device profile name or .toml path")
    group.addoption("--sr-bundles", default=str(HERE.parent / "export"), help="bundle folder")
    group.addoption("--sr-baseline", default=None, help="baseline results JSON ('none': no comparison)")
    group.addoption("--sr-tolerance", type=float, default=0.10, help="allowed median rise over the baseline p50")
