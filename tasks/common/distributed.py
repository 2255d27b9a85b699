"""torchrun / DDP: process-group setup from the environment, rank-0 helpers."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); NCCL on CUDA, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, local, world)


def wrap_ddp(module: torch.nn.Module, info: DistInfo, device: torch.device, sync_norms: bool = False) -> torch.nn.Module:
    """DDP-wrap a module when running on several processes. Batch-norm statistics stay per process
    unless ``sync_norms`` (``trainer.sync_norms``): then every statistic-computing norm is converted in
    place by ``sabn.convert_sync_norms`` and computes them over all processes (same parameters)."""
    if info.world_size <= 1 or not any(p.requires_grad for p in module.parameters()):
        return module
    if sync_norms:
        from sabn import convert_sync_norms
        if convert_sync_norms(module) is not module:
            raise ValueError("trainer.sync_norms: a model that is itself a norm layer cannot be converted in place")
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def all_reduce_sums(values, device: torch.device) -> list:
    """Sums over every process of a few numbers (counts, loss sums), in float64."""
    import torch.distributed as dist
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_buffers(modules, info: DistInfo) -> None:
    """Rank 0's buffers (running statistics, EMA copies) to every process, so that evaluations score the
    weights rank 0 checkpoints, whatever statistics the other processes gathered."""
    if info.world_size <= 1:
        return
    import torch.distributed as dist
    for module in modules:
        for buffer in unwrap(module).buffers():
            dist.broadcast(buffer.data, src=0)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


def all_reduce_mean(value: float, info: DistInfo, device: torch.device) -> float:
    if info.world_size <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
