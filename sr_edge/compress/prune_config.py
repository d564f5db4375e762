"""Pruning options (:class:`PruneConfig`) and the channel multiple a device wants; imports no
torch, so the command line builds the ``prune`` parser from these fields on any install."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from ..errors import SrEdgeError
from ..train.config import DEFAULT_DATA, Loss, Schedule, TrainConfig
from ..types import check_scale

if TYPE_CHECKING:
    from ..devices import DeviceProfile

Importance = Literal["magnitude", "group-norm", "taylor"]

PRUNED = "pruned.safetensors"  # in a run folder: the pruned model before fine-tuning
RECORD = "prune.json"  # in a run folder: the finished run's record


@dataclass(frozen=True)
class PruneConfig:
    """One pruning run: what to prune, how much, how, and the fine-tuning after it.

    ``source``: a zoo name (its shipped weights at ``scale``) or a checkpoint. Exactly one of
    ``ratio`` (share of MACs to remove, in (0, 1)) and ``target_macs`` (MACs per output
    pixel to stay at or under). ``round_to``: channel counts are multiples of it (``None``:
    the device profile's, see :func:`default_round_to`; ``profile`` names it, default the
    detected machine). ``steps`` fine-tuning steps (0: prune only); ``distill`` adds the
    unpruned parent's output as a target, weighted ``distill_weight`` against the HR image.
    The other fine-tuning fields mean what they mean in :class:`~sr_edge.train.TrainConfig`.
    ``eval_datasets``: where PSNR is measured before and after (Set5; the embedded samples
    where it is absent).
    """

    source: str
    scale: int
    out: str
    ratio: float | None = None
    target_macs: float | None = None
    importance: Importance = "group-norm"
    round_to: int | None = None
    profile: str | None = None
    distill: bool = False
    distill_weight: float = 0.5
    calibration_batches: int = 8
    steps: int = 2000
    batch_size: int = 16
    patch_size: int = 32
    lr: float = 2e-4
    lr_min: float = 1e-6
    schedule: Schedule = "cosine"
    warmup_steps: int = 0
    loss: Loss = "l1"
    data: tuple[str, ...] = DEFAULT_DATA
    data_root: str | None = None
    skip_small: bool = False
    val_fraction: float = 0.05
    val_every: int = 500
    ckpt_every: int = 100
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = False
    eval_datasets: tuple[str, ...] = ("Set5",)

    # Fields a resumed run may change (they do not change the result, or, for ``steps``,
    # extend the run as training does).
    RESUMABLE_CHANGES = ("steps", "device", "threads", "val_every", "ckpt_every", "log_every", "eval_datasets")

    def __post_init__(self) -> None:
        check_scale(self.scale)
        if not self.source:
            raise SrEdgeError("nothing to prune: name a zoo model or a .safetensors checkpoint")
        if (self.ratio is None) == (self.target_macs is None):
            raise SrEdgeError("give exactly one of ratio (--ratio) and target MACs per output pixel (--target-macs)")
        if self.ratio is not None and not 0.0 < float(self.ratio) < 1.0:
            raise SrEdgeError(f"ratio is the share of MACs to remove and must lie in (0, 1), got {self.ratio}")
        if self.target_macs is not None and not float(self.target_macs) > 0:
            raise SrEdgeError(f"target MACs per output pixel must be positive, got {self.target_macs}")
        if self.importance not in get_args(Importance):
            raise SrEdgeError(f"importance must be one of {', '.join(get_args(Importance))}, got {self.importance!r}")
        if self.round_to is not None and (isinstance(self.round_to, bool) or int(self.round_to) < 1):
            raise SrEdgeError(f"round_to must be a positive integer, got {self.round_to}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise SrEdgeError(f"distill_weight must lie in [0, 1], got {self.distill_weight}")
        if self.calibration_batches < 1:
            raise SrEdgeError(f"calibration_batches must be positive, got {self.calibration_batches}")
        if self.steps < 0:
            raise SrEdgeError(f"steps must be 0 (prune only) or more, got {self.steps}")
        self.train_config()  # the fine-tuning options are checked where they are defined

    def train_config(self, model: str = "model", options: tuple[tuple[str, Any], ...] = ()) -> TrainConfig:
        """The fine-tuning run, for the parent ``model`` (with its configuration ``options``)."""
        return TrainConfig(
            model=model,
            scale=self.scale,
            data=tuple(self.data),
            out=self.out,
            steps=max(1, self.steps),
            batch_size=self.batch_size,
            patch_size=self.patch_size,
            lr=self.lr,
            lr_min=self.lr_min,
            schedule=self.schedule,
            warmup_steps=self.warmup_steps,
            loss=self.loss,
            val_fraction=self.val_fraction,
            val_every=self.val_every,
            ckpt_every=self.ckpt_every,
            log_every=self.log_every,
            seed=self.seed,
            device=self.device,
            threads=self.threads,
            data_root=self.data_root,
            skip_small=self.skip_small,
            channels_last=self.channels_last,
            model_options=options,
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"], d["eval_datasets"] = list(self.data), list(self.eval_datasets)
        return d

    def resume_conflicts(self, saved: dict[str, Any]) -> list[str]:
        """Options that differ from a saved run's (an option the saved run predates must be at its default)."""
        mine = self.to_json()
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.default is not dataclasses.MISSING}
        defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}
        return sorted(k for k in mine if k not in self.RESUMABLE_CHANGES and saved.get(k, defaults.get(k)) != mine[k])


def default_round_to(profile: DeviceProfile | None = None) -> tuple[int, str]:
    """(channel multiple, why) for a device profile (default: the detected machine's).

    Profiles carry no such field yet, so it is derived from what they say: oneDNN (under
    OpenVINO and ONNX Runtime on x86) lays fp32 activations out in blocks of 16 channels on
    AVX-512 and 8 on AVX2, so a width between two blocks costs as much as the next block
    (measured on a 2-vCPU Xeon, 960x540, OpenVINO f32 / ORT fp32: ESPCN 40/24 channels,
    50% of the MACs removed, ran 1.39x / 1.21x faster than 64/32; 48/16, 59% removed, ran
    1.77x / 1.87x). TensorRT's tensor cores want multiples of 8.
    """
    if profile is None:
        from ..devices import detect

        profile = detect()[0].profile
    isa = set(profile.detect.isa)
    if profile.runtime.backends and profile.runtime.backends[0] == "tensorrt":
        return 8, f"{profile.name}: TensorRT tensor cores work on multiples of 8 channels"
    if "avx512f" in isa:
        return 16, f"{profile.name}: AVX-512, oneDNN blocks fp32 channels by 16"
    if "avx2" in isa:
        return 8, f"{profile.name}: AVX2, oneDNN blocks fp32 channels by 8"
    return 8, f"{profile.name}: no ISA in the profile; 8 channels assumed"


def allowed_widths(channels: int, round_to: int) -> list[int]:
    """Channel counts a group of ``channels`` may keep, widest first: multiples of ``round_to``
    (halved until narrower than the group, so a 12-channel group with 16 keeps 8), and the
    full width."""
    step = max(1, round_to)
    while step > 1 and step >= channels:
        step //= 2
    return sorted({channels, *range(step, channels, step)}, reverse=True)
