"""Training options: one frozen, validated dataclass (no dicts of strings).

Each option's default and allowed values are written here only: the command line builds
its ``train`` options from these fields (:func:`add_field_option`). Imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..data.degrade import DegradationConfig, resolve_degradation
from ..errors import SrEdgeError
from ..types import check_scale

Loss = Literal["l1", "l2", "charbonnier"]
Schedule = Literal["cosine", "step", "constant"]
Discriminator = Literal["unet", "vgg"]

# What ``sr-edge train`` trains on when no --data is given (TrainConfig itself requires data).
DEFAULT_DATA = ("T91", "BSD200")


def _either(values: tuple[str, ...], quote: bool = False) -> str:
    """``a, b or c`` (quoted with ``quote``), for error messages."""
    words = [repr(v) if quote else v for v in values]
    return f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else words[0]


# the smallest LR training patch accepted (a 3x3 conv sees a border on every pixel of a 2 px patch)
MIN_PATCH = 4


@dataclass(frozen=True)
class PerceptualConfig:
    """ESRGAN-style fine-tuning: L1 + VGG19 feature loss + relativistic adversarial loss."""

    vgg_weights: str
    pixel_weight: float = 0.01
    perceptual_weight: float = 1.0
    adversarial_weight: float = 0.005
    discriminator: Discriminator = "unet"
    disc_lr: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("pixel_weight", "perceptual_weight", "adversarial_weight", "disc_lr"):
            if getattr(self, name) < 0:
                raise SrEdgeError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.discriminator not in get_args(Discriminator):
            raise SrEdgeError(
                f"discriminator must be {_either(get_args(Discriminator), quote=True)}, got {self.discriminator!r}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; a run is reproducible from it and its seed."""

    model: str
    scale: int
    data: tuple[str, ...]
    out: str
    steps: int = 100_000
    batch_size: int = 16
    patch_size: int = 32  # LR patch side; the HR patch is patch_size * scale
    lr: float = 1e-3
    lr_min: float = 1e-6
    schedule: Schedule = "cosine"
    warmup_steps: int = 0
    loss: Loss = "l1"
    augment: bool = True  # flips and 90-degree rotations
    scale_augment: tuple[float, ...] = (1.0,)  # extra HR copies downscaled by these factors
    val_fraction: float = 0.05
    val_every: int = 2000
    ckpt_every: int = 1000
    log_every: int = 100
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    init: str | None = None
    skip_small: bool = False
    data_root: str | None = None
    # the generator's weights and batches in the channels_last memory format: the same maths in
    # another summation order, so a run resumes only in the format it started in
    channels_last: bool = False
    model_options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    perceptual: PerceptualConfig | None = None
    # How LR patches are made: "bicubic" (the protocol's clean LR), "realistic" (the preset of
    # blur, resamplers, noise and JPEG) or a degradation .toml file. The settings it names are
    # resolved once into ``degradation_config`` and saved with every checkpoint, so a resumed
    # run uses the saved settings (and refuses a file that has changed since).
    degradation: str = "bicubic"
    degradation_config: DegradationConfig | None = None

    def __post_init__(self) -> None:
        check_scale(self.scale)
        if self.degradation_config is None and self.degradation != "bicubic":
            object.__setattr__(self, "degradation_config", resolve_degradation(self.degradation))
        elif self.degradation == "bicubic" and self.degradation_config is not None:
            raise SrEdgeError("degradation 'bicubic' takes no degradation settings")
        if not self.data:
            raise SrEdgeError("no training data given; pass --data with one or more image folders")
        if not str(self.out).strip():  # Path("") would be the current folder
            raise SrEdgeError("out is empty; name the run folder (--out DIR)")
        positive = ("steps", "batch_size", "patch_size", "val_every", "ckpt_every", "log_every")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise SrEdgeError(f"{name} must be positive, got {getattr(self, name)}")
        if self.patch_size < MIN_PATCH:
            raise SrEdgeError(
                f"patch_size {self.patch_size} is too small: LR patches under {MIN_PATCH} px train on the "
                f"convolutions' zero padding more than on the image; use --patch-size {MIN_PATCH} or more"
            )
        if not 0 < self.lr < 1 or not 0 <= self.lr_min <= self.lr:
            raise SrEdgeError(
                f"learning rates must satisfy 0 <= lr_min <= lr < 1, got lr={self.lr}, lr_min={self.lr_min}"
            )
        if self.schedule not in get_args(Schedule):
            raise SrEdgeError(f"schedule must be {_either(get_args(Schedule))}, got {self.schedule!r}")
        if self.loss not in get_args(Loss):
            raise SrEdgeError(f"loss must be {_either(get_args(Loss))}, got {self.loss!r}")
        if not 0 <= self.val_fraction < 0.5:
            raise SrEdgeError(f"val_fraction must be in [0, 0.5), got {self.val_fraction}")
        if any(not 0.2 <= f <= 1.0 for f in self.scale_augment) or 1.0 not in self.scale_augment:
            raise SrEdgeError(f"scale_augment factors must lie in [0.2, 1] and include 1.0, got {self.scale_augment}")
        if self.warmup_steps < 0 or self.warmup_steps >= self.steps:
            raise SrEdgeError(f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise SrEdgeError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads is not None and self.threads <= 0:
            raise SrEdgeError(f"threads must be positive, got {self.threads}")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_options)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model_options"] = self.options
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SrEdgeError(f"unknown training option(s) {unknown} in checkpoint or config")
        d = dict(d)
        d["data"] = tuple(d["data"])
        d["scale_augment"] = tuple(d.get("scale_augment", (1.0,)))
        d["model_options"] = tuple(sorted(dict(d.get("model_options") or {}).items()))
        if d.get("perceptual") is not None:
            d["perceptual"] = PerceptualConfig(**d["perceptual"])
        if d.get("degradation_config") is not None:
            d["degradation_config"] = DegradationConfig.from_mapping(d["degradation_config"])
        return cls(**d)

    # Fields that may change when a run is resumed. All but ``steps`` leave the result
    # unchanged; a new ``steps`` extends (or shortens) the run and stretches the schedule.
    # ``out`` is where the run folder is now: a copied or moved run folder resumes.
    RESUMABLE_CHANGES = ("val_every", "ckpt_every", "log_every", "device", "threads", "steps", "out")

    def resume_conflicts(self, other: TrainConfig) -> list[str]:
        a, b = self.to_json(), other.to_json()
        return sorted(k for k in a if k not in self.RESUMABLE_CHANGES and a[k] != b[k])


def add_field_option(
    parser: argparse.ArgumentParser, cls: type, flag: str, help: str | None = None, **kw: Any
) -> argparse.Action:
    """Add ``flag`` to ``parser`` for the field of dataclass ``cls`` it names (``--batch-size``: ``batch_size``).

    The default, the choices of a ``Literal`` field and the value type (``int``, ``float``,
    ``+`` values for a tuple, a switch for a ``bool`` that defaults to False) come from the
    field, so that none is written twice; ``--help`` shows the default. ``kw`` is passed to
    ``add_argument`` and wins over what the field gives.
    """
    name = flag.lstrip("-").replace("-", "_")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ValueError(f"{cls.__name__} has no field {name!r} for {flag}")
    f = fields[name]
    if f.default is not dataclasses.MISSING:
        default: Any = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        raise ValueError(f"{cls.__name__}.{name} has no default to give {flag}")
    hint = typing.get_type_hints(cls)[name]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    given: dict[str, Any] = {"default": default}
    if hint is bool:
        if default is not False:
            raise ValueError(f"{cls.__name__}.{name} defaults to {default!r}: name the switch that turns it off")
        given["action"] = "store_true"
    elif origin is Literal:
        given["choices"] = args
    elif origin is tuple:  # tuple[X, ...]: one or more values
        given.update(type=args[0], nargs="+", default=list(default))
    else:
        scalar = next((a for a in args or (hint,) if a is not type(None)), hint)
        if scalar in (int, float):
            given["type"] = scalar
    shown = given["default"]
    if shown is not None and hint is not bool:
        text = (" ".join(map(str, shown)) if isinstance(shown, list) else str(shown)).replace("%", "%%")
        help = f"{help} (default: {text})" if help else f"default: {text}"
    return parser.add_argument(flag, help=help, **{**given, **kw})
