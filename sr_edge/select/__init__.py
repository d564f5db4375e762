"""Choosing a model per device budget: ``select(device=..., budget_ms=..., scale=...)``.

The best-quality variant (model x backend x precision x compression) that meets a device's
latency and memory budget, with every runner-up and why it lost. Figures are measured where
a results file of that device holds them (``sr-edge bench``), else estimated from the
device profile's peaks by a roofline model whose efficiency is fitted on the machines that
were measured (:mod:`sr_edge.roofline`, :mod:`.calibrate`); estimates are labelled.
:func:`across_devices` does it for several devices at once (one results file each) and
gives the table of variants by devices that ``sr-edge report A.json B.json`` writes.

Nothing here imports torch or a runtime; costing a graph imports ``onnx``.
"""

from __future__ import annotations

from .calibrate import Calibration, EstimateCheck, Factor, check_estimates, fit, lanes, spearman
from .core import LATENCY_KINDS, Candidate, Selection, SelectOptions, compression_of, select
from .measured import committed_results, find_results, profile_of, resolve_profile
from .table import DevicesTable, across_devices
from .verify import Verification, is_this_machine, verify

__all__ = [
    "LATENCY_KINDS",
    "Calibration",
    "Candidate",
    "DevicesTable",
    "EstimateCheck",
    "Factor",
    "SelectOptions",
    "Selection",
    "Verification",
    "across_devices",
    "check_estimates",
    "committed_results",
    "compression_of",
    "find_results",
    "fit",
    "is_this_machine",
    "lanes",
    "profile_of",
    "resolve_profile",
    "select",
    "spearman",
    "verify",
]
