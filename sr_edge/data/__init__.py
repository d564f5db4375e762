"""Images, the MATLAB-compatible degradation, colour conversion and evaluation datasets."""

from .color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from .datasets import DEFAULT_DATASET, Dataset, list_images, resolve_dataset, resolve_datasets
from .io import IMAGE_SUFFIXES, read_image, split_alpha, write_image
from .resize import imresize, modcrop

__all__ = [
    "DEFAULT_DATASET",
    "IMAGE_SUFFIXES",
    "Dataset",
    "imresize",
    "list_images",
    "modcrop",
    "read_image",
    "resolve_dataset",
    "resolve_datasets",
    "rgb_to_y",
    "rgb_to_ycbcr",
    "split_alpha",
    "write_image",
    "ycbcr_to_rgb",
]
