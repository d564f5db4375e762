"""Training (needs the ``train`` extra): config, patch sampling, the loop, GAN parts."""

from .config import PerceptualConfig, TrainConfig
from .loop import TrainResult, learning_rate, train

__all__ = ["PerceptualConfig", "TrainConfig", "TrainResult", "learning_rate", "train"]
