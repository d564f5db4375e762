"""What a benchmark run measures and how: :class:`BenchSettings`, validated on construction."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data.datasets import check_data_root
from ..devices import PEERS, Resolution
from ..errors import SrEdgeError
from ..paths import bundles_dir, shared_dir
from . import heap
from .contenders import OPENCV_MODELS
from .crops import CROP_ALIGN
from .timing import LatencyPlan

DEFAULT_BUNDLES = bundles_dir()
OPENCV_ENV = "SR_EDGE_OPENCV_MODELS"
DEFAULT_OPENCV_DIR = shared_dir() / "peers" / "opencv_dnn_superres"


@dataclass(frozen=True)
class BenchSettings:
    """What to measure and how; ``None`` fields take the device profile's values."""

    models: tuple[str, ...] = ()  # bundle model names or variant paths (``espcn``, ``espcn/x2``); empty = all
    bundles_dir: Path = DEFAULT_BUNDLES
    datasets: tuple[str, ...] | None = None
    data_root: str | None = None
    resolutions: tuple[Resolution, ...] | None = None
    scales: tuple[int, ...] | None = None
    backends: tuple[str, ...] | None = None
    precisions: tuple[str, ...] | None = None
    peers: tuple[str, ...] | None = None
    threads: int | None = None
    latency: LatencyPlan = field(default_factory=LatencyPlan)
    quality: bool = True
    crops: bool = True
    crop_size: int = 96
    opencv_models: tuple[str, ...] = tuple(OPENCV_MODELS)
    opencv_dir: Path | None = None  # None: $SR_EDGE_OPENCV_MODELS, else ../shared/peers/opencv_dnn_superres
    heap: str = "steady"  # "steady": freed memory stays mapped between runs (see heap.py); "default"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bundles_dir", Path(self.bundles_dir))
        check_data_root(self.data_root)  # a wrong root must not fall back to the samples in silence
        if self.peers is not None:
            bad = [p for p in self.peers if p not in PEERS]
            if bad:
                raise SrEdgeError(f"unknown peer {bad[0]!r}; peers are {', '.join(PEERS)}")
        for name in self.opencv_models:
            if name not in OPENCV_MODELS:
                raise SrEdgeError(f"unknown OpenCV model {name!r}; known: {', '.join(OPENCV_MODELS)}")
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise SrEdgeError(f"threads must be a positive integer, got {self.threads!r}")
        if self.heap not in heap.HEAP_MODES:
            raise SrEdgeError(f"heap must be one of {', '.join(heap.HEAP_MODES)}, got {self.heap!r}")
        if isinstance(self.crop_size, bool) or self.crop_size < CROP_ALIGN or self.crop_size % CROP_ALIGN:
            raise SrEdgeError(f"crop size must be a positive multiple of {CROP_ALIGN}, got {self.crop_size!r}")

    def opencv_models_dir(self) -> Path:
        """Where OpenCV's ``.pb`` graphs are read from."""
        if self.opencv_dir is not None:
            return Path(self.opencv_dir)
        env = os.environ.get(OPENCV_ENV)
        return Path(env) if env else DEFAULT_OPENCV_DIR
