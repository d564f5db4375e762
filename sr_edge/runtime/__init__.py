"""The upscale runtime: what an end user runs on a laptop or a Jetson.

A picture, a folder or a video in, the upscaled result out, with no torch:

- :mod:`.tiling`: large images in tiles that overlap by the model's receptive field, so the
  stitched result equals the whole-image one (no seams) and memory follows the tile size;
- :mod:`.files` / :mod:`.folder`: image files and folders (relative layout kept, existing
  outputs skipped, every output written to a temp name and renamed, failures reported);
- :mod:`.video`: video through PyAV's FFmpeg, decode / upscale / encode overlapped, audio,
  frame rate, frame count and rotation kept (``pip install 'sr-edge[video]'``);
- :mod:`.auto`: ``--backend auto`` (fastest backend and precision here, from bench results
  or the device profile) and ``--tile auto`` (the device profile's memory budget);
- :mod:`.job`: the ``sr-edge upscale`` command put together.

Nothing here imports torch unless a checkpoint is asked to run in PyTorch.
"""

from __future__ import annotations

from .auto import OpenedModel, auto_tile, bench_choice, bytes_per_pixel, device_profile, open_model
from .files import ImageResult, upscale_file
from .folder import Plan, Summary, plan_files, plan_folder, run_plan
from .job import UpscaleRequest, parse_tile, run
from .pipeline import Prefetch
from .tiling import Tile, split, tile_bands, tile_grid, tile_overlap, upscale_tiled

__all__ = [
    "ImageResult",
    "OpenedModel",
    "Plan",
    "Prefetch",
    "Summary",
    "Tile",
    "UpscaleRequest",
    "auto_tile",
    "bench_choice",
    "bytes_per_pixel",
    "device_profile",
    "open_model",
    "parse_tile",
    "plan_files",
    "plan_folder",
    "run",
    "run_plan",
    "split",
    "tile_bands",
    "tile_grid",
    "tile_overlap",
    "upscale_file",
    "upscale_tiled",
]
