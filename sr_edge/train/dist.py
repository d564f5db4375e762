"""Data-parallel training under ``torchrun``: rank, world size, and the collective calls the loop needs.

Outside ``torchrun`` (no ``WORLD_SIZE``) every call is a no-op, so the loop has one code path.
"""

from __future__ import annotations

import os

import torch


class Distributed:
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
        """Rank 0: the process that writes the log and the checkpoints."""
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (a signal reaches one rank, all must stop)."""
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
