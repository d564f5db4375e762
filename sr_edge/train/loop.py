"""The training loop: seeded, resumable to the bit, data-parallel under ``torchrun``.

Determinism: the model is initialised from the seed and every batch is a function of
``(seed, step)``, so an interrupted run resumed from its last checkpoint (model + optimizer
state + step) reaches exactly the weights of an uninterrupted run. Ctrl-C (SIGINT) or
SIGTERM finishes the current step, writes the checkpoint and exits; a second Ctrl-C aborts.
Under ``torchrun`` each rank computes an equal slice of the same global batch and DDP
averages the gradients, so N processes train the same model as one (up to float rounding).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint, training_stage
from ..data.datasets import Dataset
from ..data.io import check_out_folder
from ..errors import SrEdgeError
from ..evaluate import evaluate
from ..models import create_model, list_models, load_state, model_card
from ..provenance import cpu_model, sha256_file
from ..upscale import NetworkUpscaler
from .config import TrainConfig
from .data import PatchSampler, split_validation, training_files

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
    if kind == "l1":
        return F.l1_loss
    if kind == "l2":
        return F.mse_loss
    return lambda a, b: torch.sqrt((a - b) ** 2 + 1e-6).mean()


class _StopFlag:
    """SIGINT/SIGTERM -> finish the step, checkpoint, exit; a second SIGINT aborts."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def _stop_on_signals() -> Iterator[_StopFlag]:
    flag = _StopFlag()
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.signal(s, flag.handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SrEdgeError(f"device {name} asked for, but torch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def _init_from(model: nn.Module, path: str, model_name: str, scale: int) -> dict[str, Any]:
    """Fine-tuning start: copy every tensor of ``path`` whose name and shape fit.

    ``path`` is a checkpoint file, or a registered model name meaning its shipped weights
    for ``scale`` (``--init ecbsr-m4c16`` to adapt the shipped model to one's own images).
    """
    if not Path(path).exists() and path in list_models():
        card = model_card(path)
        if scale not in card.weights:
            raise SrEdgeError(f"--init {path}: no shipped weights for x{scale}")
        path = str(card.weights_file(scale))
    ckpt = load_checkpoint(path)
    if model_card(ckpt.model).family != model_card(model_name).family:
        raise SrEdgeError(f"{path}: holds a {ckpt.model} model; cannot initialise a {model_name} from it")
    own = model.state_dict()
    fitting = {k: v for k, v in ckpt.state_dict.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise SrEdgeError(f"{path}: no tensor fits {model_name} (another configuration?)")
    own.update(fitting)
    model.load_state_dict(own)
    return {
        "from": ckpt.model,
        "scale": ckpt.scale,
        "sha256": sha256_file(Path(path)),
        "copied": len(fitting),
        "kept_initial": len(own) - len(fitting),
        "path": path,
        "parent": training_stage(ckpt.meta),  # so a card can list the whole chain of fine-tunes
    }


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


class _Dist:
    """torchrun environment: rank, world size, and the all-reduce of the stop flag."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0])
        dist.all_reduce(t)
        return bool(t.item())

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) the run ``config`` describes; returns where it ended."""
    from tqdm import tqdm

    started = time.time()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _device(config.device)
    dist = _Dist(device)
    try:
        card = model_card(config.model)
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
            raise SrEdgeError(
                f"{out} already holds a run ({LAST}); pass --resume to continue it or choose another --out"
            )
        if resume and not last_path.exists():
            raise SrEdgeError(f"nothing to resume: {last_path} does not exist")

        torch.manual_seed(config.seed)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        # On the device before any state is loaded, so that the optimizer state a resumed run
        # loads lands there too (Optimizer.load_state_dict moves it to its parameters' device).
        model = create_model(config.model, config.scale, **config.options).to(device)
        if config.channels_last:  # Module.to takes memory_format at run time; its type stubs omit it
            model = model.to(memory_format=memory_format)  # type: ignore[call-overload]
        gan = _GanParts(config, device) if config.perceptual is not None else None
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999))
        start_step, best_val = 0, None
        init_info: dict[str, Any] | None = None
        if resume:
            ckpt = load_checkpoint(last_path, with_training_state=True)
            saved = TrainConfig.from_json(ckpt.meta["train_config"])
            conflicts = config.resume_conflicts(saved)
            if conflicts:
                raise SrEdgeError(f"cannot resume {out}: options differ from the saved run: {', '.join(conflicts)}")
            load_state(model, ckpt.state_dict, str(last_path))
            optimizer.load_state_dict(ckpt.optimizers["model"])
            if gan is not None:
                gan.load(ckpt.modules, ckpt.optimizers)
            start_step = int(ckpt.meta["step"])
            if start_step > config.steps:
                raise SrEdgeError(
                    f"cannot resume {out}: it is at step {start_step}, past --steps {config.steps}; "
                    f"pass --steps {start_step} or more (more extends the run)"
                )
            best_val = ckpt.meta.get("best_val_psnr_y")
            init_info = ckpt.meta.get("init")  # a resumed fine-tune still says where it started
        elif config.init:
            init_info = _init_from(model, config.init, config.model, config.scale)

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
        )
        val_set = Dataset("held-out", out, tuple(val_files)) if val_files else None
        net: nn.Module = model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        loss_fn = pixel_loss(config.loss)
        meta_base: dict[str, Any] = {
            "train_config": config.to_json(),
            "data": {
                "folders": list(config.data),
                "train_images": len(train_files),
                "val_images": [f.name for f in val_files],
                "pairs_in_memory": len(sampler),
                "skipped_small": sampler.skipped,
            },
            "init": init_info,
            "world_size": dist.world,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        }
        log_file = out / LOG
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)

        def checkpoint(step: int, metrics: dict[str, float], path: Path, with_state: bool = True) -> None:
            meta = {
                **meta_base,
                "step": step,
                "metrics": metrics,
                "best_val_psnr_y": best_val,
                "wall_seconds": time.time() - started + float(prior_seconds),
            }
            save_checkpoint(
                path,
                config.model,
                config.scale,
                model.state_dict(),
                meta=meta,
                overrides=config.options,
                optimizers=(
                    {"model": optimizer.state_dict(), **(gan.optimizers() if gan else {})} if with_state else None
                ),
                modules=(gan.modules() if gan and with_state else None),
            )

        prior_seconds = 0.0
        if resume:
            prior_seconds = float(ckpt.meta.get("wall_seconds", 0.0))
        metrics: dict[str, float] = {}
        interrupted = False
        step = start_step
        bar = tqdm(
            total=config.steps,
            initial=start_step,
            desc=f"train {config.model} x{config.scale}",
            disable=(None if progress else True) if dist.main else True,
            dynamic_ncols=True,
        )
        loss_avg: float | None = None
        with _stop_on_signals() as stop:
            while step < config.steps:
                lr_now = learning_rate(config, step)
                for group in optimizer.param_groups:
                    group["lr"] = lr_now
                lr_np, hr_np = sampler.batch(config.seed, step, config.batch_size, dist.rank, dist.world)
                lr_t = torch.from_numpy(lr_np).to(device).contiguous(memory_format=memory_format)
                hr_t = torch.from_numpy(hr_np).to(device).contiguous(memory_format=memory_format)
                if gan is None:
                    loss = loss_fn(net(lr_t), hr_t)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step_losses = {"loss": float(loss.detach())}
                else:
                    step_losses = gan.step(net, optimizer, lr_t, hr_t, step)
                step += 1
                value = step_losses["loss"]
                loss_avg = value if loss_avg is None else 0.98 * loss_avg + 0.02 * value
                bar.update(1)
                if step % 10 == 0 or step == config.steps:
                    bar.set_postfix(
                        loss=f"{loss_avg:.4f}",
                        lr=f"{lr_now:.2e}",
                        **({"val": f"{metrics['val_psnr_y']:.2f}"} if "val_psnr_y" in metrics else {}),
                    )
                finished = step == config.steps
                if dist.main and (step % config.log_every == 0 or finished):
                    record = {
                        "step": step,
                        "lr": lr_now,
                        "loss_ema": loss_avg,
                        **step_losses,
                        "time": time.time() - started,
                    }
                    with open(log_file, "a") as f:
                        f.write(json.dumps(record) + "\n")
                    if bar.disable and progress:
                        print(
                            f"step {step}/{config.steps} loss {loss_avg:.5f} lr {lr_now:.2e}",
                            file=sys.stderr,
                            flush=True,
                        )
                if dist.main and val_set is not None and (step % config.val_every == 0 or finished):
                    metrics = _validate(model, config, val_set, device)
                    with open(log_file, "a") as f:
                        f.write(json.dumps({"step": step, **metrics}) + "\n")
                    if best_val is None or metrics["val_psnr_y"] > best_val:
                        best_val = metrics["val_psnr_y"]
                        checkpoint(step, metrics, out / BEST, with_state=False)
                    if bar.disable and progress:
                        print(
                            f"step {step}: held-out PSNR-Y {metrics['val_psnr_y']:.3f} dB", file=sys.stderr, flush=True
                        )
                stop_now = dist.any(stop.requested)
                if dist.main and (step % config.ckpt_every == 0 or finished or stop_now):
                    checkpoint(step, metrics, last_path)
                if stop_now:
                    interrupted = not finished
                    break
        bar.close()
        dist.barrier()
        return TrainResult(
            out=out,
            last=last_path,
            best=(out / BEST) if (out / BEST).exists() else None,
            step=step,
            interrupted=interrupted,
            val_psnr=metrics.get("val_psnr_y"),
            best_val_psnr=best_val,
            seconds=time.time() - started,
        )
    finally:
        dist.close()


class _GanParts:
    """Discriminator, VGG features and their optimizer for perceptual fine-tuning."""

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        from .gan import load_vgg19, make_discriminator

        assert config.perceptual is not None
        self.cfg = config.perceptual
        self.vgg = load_vgg19(self.cfg.vgg_weights).to(device)
        self.disc = make_discriminator(self.cfg.discriminator).to(device)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=self.cfg.disc_lr, betas=(0.9, 0.99))

    def load(self, modules: dict[str, dict[str, torch.Tensor]], optimizers: dict[str, dict[str, Any]]) -> None:
        if "disc" not in modules or "disc" not in optimizers:
            raise SrEdgeError("the checkpoint has no discriminator state; it was not a perceptual run")
        self.disc.load_state_dict(modules["disc"])
        self.opt.load_state_dict(optimizers["disc"])

    def modules(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"disc": self.disc.state_dict()}

    def optimizers(self) -> dict[str, dict[str, Any]]:
        return {"disc": self.opt.state_dict()}

    def step(
        self, net: nn.Module, opt_g: torch.optim.Optimizer, lr: torch.Tensor, hr: torch.Tensor, step: int
    ) -> dict[str, float]:
        from .gan import relativistic_losses

        c = self.cfg
        for p in self.disc.parameters():
            p.requires_grad_(False)
        sr = net(lr)
        l_pix = F.l1_loss(sr, hr)
        l_per = F.l1_loss(self.vgg(sr), self.vgg(hr).detach())
        g_adv, _ = relativistic_losses(self.disc(hr).detach(), self.disc(sr))
        loss_g = c.pixel_weight * l_pix + c.perceptual_weight * l_per + c.adversarial_weight * g_adv
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in self.disc.parameters():
            p.requires_grad_(True)
        _, d_loss = relativistic_losses(self.disc(hr), self.disc(sr.detach()))
        self.opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt.step()
        return {
            "loss": float(loss_g.detach()),
            "l_pix": float(l_pix.detach()),
            "l_percep": float(l_per.detach()),
            "l_g_adv": float(g_adv.detach()),
            "l_d": float(d_loss.detach()),
        }
