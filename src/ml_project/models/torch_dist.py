"""Where a torch model trains: the device, and this process's place under torchrun."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ml_project.errors import UserError


def resolve_device(spec: str) -> torch.device:
    """`auto`: a GPU when there is one, else the CPU. Parallel workers (torchrun's processes,
    DVC queue workers) take the visible GPUs round robin instead of all using the first."""
    if spec == "auto":
        if torch.cuda.is_available():
            from ml_project.threads import pick_gpu, worker_index

            return torch.device("cuda", pick_gpu(torch.cuda.device_count(), worker_index()))
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device '{spec}' requested but no CUDA GPU is available (valid: auto, cpu)"
        )
    return device


@dataclass
class Dist:
    """This process's place under torchrun; rank 0 of 1 otherwise."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: torch.device) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", 1))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        owns = False
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), owns)

    def wrap(self, net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module the training step calls: `net` itself, or DDP around it."""
        if self.world == 1:
            return net
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(value)
        return value

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def stop(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
