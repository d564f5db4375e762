"""Deployable bundles: ``export_bundle`` writes one, ``read_bundle`` opens and verifies one.

Importing this package does not import torch; ``export_bundle`` does, when called (it
needs the ``train`` extra). Reading a bundle needs only the core install.
"""

from __future__ import annotations

from ..bundle import FORMAT, FORMAT_VERSION, Bundle, TensorSpec, find_bundles, is_bundle, read_bundle
from .exporter import DEFAULT_OPSET, ExportConfig, export_bundle
from .graph import compare_graphs, graph_sha256, graph_structure

__all__ = [
    "DEFAULT_OPSET",
    "FORMAT",
    "FORMAT_VERSION",
    "Bundle",
    "ExportConfig",
    "TensorSpec",
    "compare_graphs",
    "export_bundle",
    "find_bundles",
    "graph_sha256",
    "graph_structure",
    "is_bundle",
    "read_bundle",
]
