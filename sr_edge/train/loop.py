"""The training loop: seeded, resumable to the bit, data-parallel under ``torchrun``.

Determinism: the model is initialised from the seed and every batch is a function of
``(seed, step)``, so an interrupted run resumed from its last checkpoint (model + optimizer
state + step) reaches exactly the weights of an uninterrupted run. Ctrl-C (SIGINT) or
SIGTERM finishes the current step, writes the checkpoint and exits; a second Ctrl-C aborts.
Under ``torchrun`` each rank computes an equal slice of the same global batch and DDP
averages the gradients, so N processes train the same model as one (up to float rounding).

:func:`train` is the steps in order: check the request, set up the run (:func:`_setup`:
model, optimizer, resumed or fine-tuning start, data), then step, log, validate and
checkpoint until ``steps`` or a stop signal. The GAN parts live in :mod:`.gan`, the
``torchrun`` calls in :mod:`.dist`, the signal handling in :mod:`.signals`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..data.datasets import Dataset
from ..data.io import check_out_folder
from ..errors import SrEdgeError
from ..evaluate import evaluate
from ..models import ModelCard, create_model, load_state, model_card
from ..provenance import cpu_model
from ..upscale import NetworkUpscaler
from .config import TrainConfig
from .data import PatchSampler, split_validation, training_files
from .dist import Distributed
from .finetune import init_architecture, init_from
from .gan import GanParts
from .signals import stop_on_signals

LAST = "last.safetensors"
BEST = "best.safetensors"
LOG = "log.jsonl"


@dataclass(frozen=True)
class TrainResult:
    """Where a run ended: its checkpoints, step, and last/best held-out PSNR."""

    out: Path
    last: Path
    best: Path | None
    step: int
    interrupted: bool
    val_psnr: float | None
    best_val_psnr: float | None
    seconds: float


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate for ``step`` (0-based): linear warm-up, then the schedule."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    if config.schedule == "cosine":
        return config.lr_min + (config.lr - config.lr_min) * 0.5 * (1 + math.cos(math.pi * t))
    if config.schedule == "step":
        return max(config.lr_min, config.lr * 0.5 ** math.floor(4 * t))
    return config.lr


def pixel_loss(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The pixel loss ``kind`` names (``l1``, ``l2``, else Charbonnier)."""
    if kind == "l1":
        return F.l1_loss
    if kind == "l2":
        return F.mse_loss
    return lambda a, b: torch.sqrt((a - b) ** 2 + 1e-6).mean()


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SrEdgeError(f"device {name} asked for, but torch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def _validate(net: nn.Module, cfg: TrainConfig, val: Dataset, device: torch.device) -> dict[str, float]:
    card = model_card(cfg.model)
    was_training = net.training
    net.eval()

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(x).to(device)).float().cpu().numpy()

    try:
        result = evaluate(NetworkUpscaler(cfg.model, cfg.scale, card.color_mode, run), val)
    finally:
        net.train(was_training)
    return {"val_psnr_y": result.psnr_y, "val_ssim_y": result.ssim_y}


# --- setting a run up ------------------------------------------------------------------


def _check_request(config: TrainConfig, card: ModelCard, dist: Distributed, resume: bool) -> Path:
    """Refuse what cannot run, before any work: returns the run folder."""
    if config.perceptual is not None and card.color_mode != "rgb":
        raise SrEdgeError(f"perceptual/GAN training needs an RGB model; {config.model} works on Y")
    if config.perceptual is not None and dist.enabled:
        raise SrEdgeError("perceptual/GAN training runs in one process; start it without torchrun")
    if config.batch_size % dist.world:
        raise SrEdgeError(f"batch size {config.batch_size} does not split over {dist.world} processes")
    out = Path(config.out)
    check_out_folder(out)
    last_path = out / LAST
    if not resume and last_path.exists():
        raise SrEdgeError(f"{out} already holds a run ({LAST}); pass --resume to continue it or choose another --out")
    if resume and not last_path.exists():
        raise SrEdgeError(f"nothing to resume: {last_path} does not exist")
    return out


@dataclass(frozen=True)
class TrainHooks:
    """How a later stage (pruning, quantisation-aware fine-tuning) trains a model that is not
    the plain zoo model, through the same loop, checkpoints and exact resume.

    ``model`` builds the network to train in place of ``create_model(config.model, ...)``:
    it must be deterministic (a resumed run calls it again, then loads the saved weights),
    and it is called after the run's seed is set. ``loss(sr, hr, lr)`` replaces the pixel
    loss (e.g. distillation from a teacher). ``meta`` goes into every checkpoint's record
    (e.g. a pruned architecture, quantiser settings) so that the checkpoint says what it is.
    """

    model: Callable[[], nn.Module] | None = None
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Start:
    """Where the loop starts: step 0 of a new run, or where a resumed run's checkpoint stopped."""

    step: int = 0
    best_val: float | None = None
    init: dict[str, Any] | None = None  # a fine-tune's origin (kept by a resumed fine-tune)
    prior_seconds: float = 0.0  # wall time of the run's earlier sessions


def _resume(
    config: TrainConfig, out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, gan: GanParts | None
) -> _Start:
    """Load ``out``'s last checkpoint (weights, optimizer state, step) into the parts built from ``config``."""
    last_path = out / LAST
    ckpt = load_checkpoint(last_path, with_training_state=True)
    saved = TrainConfig.from_json(ckpt.meta["train_config"])
    conflicts = config.resume_conflicts(saved)
    if conflicts:
        raise SrEdgeError(f"cannot resume {out}: options differ from the saved run: {', '.join(conflicts)}")
    load_state(model, ckpt.state_dict, str(last_path))
    optimizer.load_state_dict(ckpt.optimizers["model"])
    if gan is not None:
        gan.load(ckpt.modules, ckpt.optimizers)
    step = int(ckpt.meta["step"])
    if step > config.steps:
        raise SrEdgeError(
            f"cannot resume {out}: it is at step {step}, past --steps {config.steps}; "
            f"pass --steps {step} or more (more extends the run)"
        )
    return _Start(
        step=step,
        best_val=ckpt.meta.get("best_val_psnr_y"),
        init=ckpt.meta.get("init"),  # a resumed fine-tune still says where it started
        prior_seconds=float(ckpt.meta.get("wall_seconds", 0.0)),
    )


@dataclass
class _Run:
    """One training session's parts and its progress (step, best held-out PSNR, last metrics)."""

    config: TrainConfig
    out: Path
    device: torch.device
    dist: Distributed
    model: nn.Module
    net: nn.Module  # the model, or its DDP wrapper: what the training step calls
    optimizer: torch.optim.Optimizer
    gan: GanParts | None
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (sr, hr, lr) -> loss
    sampler: PatchSampler
    val_set: Dataset | None
    memory_format: torch.memory_format
    meta: dict[str, Any]  # what every checkpoint records about the run
    started: float
    prior_seconds: float
    step: int
    best_val: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    loss_avg: float | None = None

    @property
    def log_file(self) -> Path:
        return self.out / LOG

    def train_step(self) -> tuple[float, dict[str, float]]:
        """One optimizer step on the batch of ``(seed, step)``; returns (learning rate, losses)."""
        cfg, dist = self.config, self.dist
        lr_now = learning_rate(cfg, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_now
        lr_np, hr_np = self.sampler.batch(cfg.seed, self.step, cfg.batch_size, dist.rank, dist.world)
        lr_t = torch.from_numpy(lr_np).to(self.device).contiguous(memory_format=self.memory_format)
        hr_t = torch.from_numpy(hr_np).to(self.device).contiguous(memory_format=self.memory_format)
        if self.gan is None:
            loss = self.loss_fn(self.net(lr_t), hr_t, lr_t)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses = {"loss": float(loss.detach())}
        else:
            losses = self.gan.step(self.net, self.optimizer, lr_t, hr_t)
        self.step += 1
        value = losses["loss"]
        self.loss_avg = value if self.loss_avg is None else 0.98 * self.loss_avg + 0.02 * value
        return lr_now, losses

    def log(self, record: Mapping[str, Any]) -> None:
        with open(self.log_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    def validate(self) -> None:
        """Held-out PSNR/SSIM now, logged; a new best is written to ``best.safetensors`` (weights only)."""
        assert self.val_set is not None
        self.metrics = _validate(self.model, self.config, self.val_set, self.device)
        self.log({"step": self.step, **self.metrics})
        if self.best_val is None or self.metrics["val_psnr_y"] > self.best_val:
            self.best_val = self.metrics["val_psnr_y"]
            self.checkpoint(self.out / BEST, with_state=False)

    def checkpoint(self, path: Path, with_state: bool = True) -> None:
        """Write the weights (with optimizer and GAN state: resumable) and the run's record to ``path``."""
        cfg, gan = self.config, self.gan
        meta = {
            **self.meta,
            "step": self.step,
            "metrics": self.metrics,
            "best_val_psnr_y": self.best_val,
            "wall_seconds": time.time() - self.started + float(self.prior_seconds),
        }
        save_checkpoint(
            path,
            cfg.model,
            cfg.scale,
            self.model.state_dict(),
            meta=meta,
            overrides=cfg.options,
            optimizers=(
                {"model": self.optimizer.state_dict(), **(gan.optimizers() if gan else {})} if with_state else None
            ),
            modules=(gan.modules() if gan and with_state else None),
        )


def _setup(
    config: TrainConfig, resume: bool, device: torch.device, dist: Distributed, started: float, hooks: TrainHooks
) -> _Run:
    """Build the run: seeded model, GAN parts, optimizer, its start (resumed, fine-tuned or new), data."""
    card = model_card(config.model)
    out = _check_request(config, card, dist, resume)
    # The seed fixes the initial weights, and the GAN parts draw from it after the model:
    # this order is part of what makes a run reproducible.
    torch.manual_seed(config.seed)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    if hooks.model is None and config.init:  # a pruned --init trains in its own recorded architecture
        pruned = init_architecture(config.init, config.model, config.scale, config.options)
        if pruned is not None:
            hooks = TrainHooks(model=pruned[0], loss=hooks.loss, meta={**pruned[1], **hooks.meta})
    # On the device before any state is loaded, so that the optimizer state a resumed run
    # loads lands there too (Optimizer.load_state_dict moves it to its parameters' device).
    built = hooks.model() if hooks.model is not None else create_model(config.model, config.scale, **config.options)
    model = built.to(device)
    if config.channels_last:  # Module.to takes memory_format at run time; its type stubs omit it
        model = model.to(memory_format=memory_format)  # type: ignore[call-overload]
    gan = GanParts(config.perceptual, device) if config.perceptual is not None else None
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999))
    if resume:
        start = _resume(config, out, model, optimizer, gan)
    elif config.init:
        start = _Start(init=init_from(model, config.init, config.model, config.scale))
    else:
        start = _Start()

    files = training_files(config.data, config.data_root)
    train_files, val_files = split_validation(files, config.val_fraction)
    sampler = PatchSampler(
        train_files,
        config.scale,
        card.color_mode,
        config.patch_size,
        config.scale_augment,
        config.augment,
        config.skip_small,
        degradation=config.degradation_config,
    )
    val_set = Dataset("held-out", out, tuple(val_files)) if val_files else None
    net: nn.Module = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    meta: dict[str, Any] = {
        **hooks.meta,
        "train_config": config.to_json(),
        "data": {
            "folders": list(config.data),
            "train_images": len(train_files),
            "val_images": [f.name for f in val_files],
            "pairs_in_memory": len(sampler),
            "skipped_small": sampler.skipped,
        },
        "init": start.init,
        "world_size": dist.world,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
    }
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
    return _Run(
        config=config,
        out=out,
        device=device,
        dist=dist,
        model=model,
        net=net,
        optimizer=optimizer,
        gan=gan,
        loss_fn=hooks.loss or _pixel_only(pixel_loss(config.loss)),
        sampler=sampler,
        val_set=val_set,
        memory_format=memory_format,
        meta=meta,
        started=started,
        prior_seconds=start.prior_seconds,
        step=start.step,
        best_val=start.best_val,
    )


# --- running it ------------------------------------------------------------------------


def _steps(run: _Run, progress: bool) -> bool:
    """Step until ``steps`` or a stop signal, logging, validating and checkpointing on schedule.

    Returns whether a signal stopped the run before its last step.
    """
    from tqdm import tqdm

    cfg, dist = run.config, run.dist
    bar = tqdm(
        total=cfg.steps,
        initial=run.step,
        desc=f"train {cfg.model} x{cfg.scale}",
        disable=(None if progress else True) if dist.main else True,
        dynamic_ncols=True,
    )

    def note(text: str) -> None:  # plain lines where no bar is drawn (a log file, CI)
        if bar.disable and progress:
            print(text, file=sys.stderr, flush=True)

    interrupted = False
    with stop_on_signals() as stop:
        while run.step < cfg.steps:
            lr_now, losses = run.train_step()
            step = run.step
            bar.update(1)
            if step % 10 == 0 or step == cfg.steps:
                bar.set_postfix(
                    loss=f"{run.loss_avg:.4f}",
                    lr=f"{lr_now:.2e}",
                    **({"val": f"{run.metrics['val_psnr_y']:.2f}"} if "val_psnr_y" in run.metrics else {}),
                )
            finished = step == cfg.steps
            if dist.main and (step % cfg.log_every == 0 or finished):
                run.log(
                    {"step": step, "lr": lr_now, "loss_ema": run.loss_avg, **losses, "time": time.time() - run.started}
                )
                note(f"step {step}/{cfg.steps} loss {run.loss_avg:.5f} lr {lr_now:.2e}")
            if dist.main and run.val_set is not None and (step % cfg.val_every == 0 or finished):
                run.validate()
                note(f"step {step}: held-out PSNR-Y {run.metrics['val_psnr_y']:.3f} dB")
            stop_now = dist.any(stop.requested)
            if dist.main and (step % cfg.ckpt_every == 0 or finished or stop_now):
                run.checkpoint(run.out / LAST)
            if stop_now:
                interrupted = not finished
                break
    bar.close()
    return interrupted


def _pixel_only(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda sr, hr, lr: fn(sr, hr)


def train(
    config: TrainConfig, resume: bool = False, progress: bool = True, hooks: TrainHooks | None = None
) -> TrainResult:
    """Train (or resume) the run ``config`` describes; returns where it ended.

    ``hooks`` let a later stage train its own form of the model through this loop (see
    :class:`TrainHooks`); a resumed run must be given the same hooks."""
    started = time.time()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _device(config.device)
    dist = Distributed(device)
    out = Path(config.out)
    before = set(os.listdir(out)) if out.is_dir() else None  # what a failed new run must leave as it was
    try:
        run = _setup(config, resume, device, dist, started, hooks or TrainHooks())
        interrupted = _steps(run, progress)
        dist.barrier()
        best = run.out / BEST
        return TrainResult(
            out=run.out,
            last=run.out / LAST,
            best=best if best.exists() else None,
            step=run.step,
            interrupted=interrupted,
            val_psnr=run.metrics.get("val_psnr_y"),
            best_val_psnr=run.best_val,
            seconds=time.time() - started,
        )
    except BaseException:
        if dist.main and not resume:
            _remove_unfinished(out, before)
        raise
    finally:
        dist.close()


def _remove_unfinished(out: Path, before: set[str] | None) -> None:
    """After a new run failed (a full disk, an error) before its first checkpoint: remove what
    it wrote, so no run folder holding only ``log.jsonl`` blocks the next try or a --resume."""
    if (out / LAST).exists() or not out.is_dir():
        return  # resumable: the folder stays
    if before is None:
        shutil.rmtree(out, ignore_errors=True)
        return
    for name in set(os.listdir(out)) - before:
        made = out / name
        if made.is_dir() and not made.is_symlink():
            shutil.rmtree(made, ignore_errors=True)
        else:
            made.unlink(missing_ok=True)
