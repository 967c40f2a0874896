"""Data-parallel training across processes and machines (torchrun), through torch.distributed.

    torchrun --nproc-per-node N train.py fit ...

torchrun starts one process per GPU (or per share of a CPU) and gives each its place in the
environment (RANK, WORLD_SIZE, LOCAL_RANK); ``World.from_env`` reads it. A plain ``python
train.py fit`` has none: a World of one, where every function here does nothing.

Every rank builds the same model (same seed), prepares the same clips (the same seeded
generation or the same files: no rank waits for another to prepare them) and draws the same
batch plans (twostream.batches: seeded, drawn in the main process); each then takes its rows of
every global batch (``World.shard``), so ``--batch`` stays the global batch. DistributedDataParallel
averages the gradients over ranks, and the mean over ranks of each rank's mean loss over B / W
rows is the mean over the B rows: each step is the single-process step on the global batch.

BatchNorm: in training mode a BatchNorm normalises with its batch's statistics, and under DDP
alone each rank would use its own B / W rows' (and the saved running statistics would be rank
0's). ``sync_batchnorm`` makes every BatchNorm2d normalise with the global batch's mean and
variance (each rank's count, mean and squared deviations, summed over ranks by a differentiable
all-reduce), so the towers train as one process on the global batch would, at the cost of one
small all-reduce per BatchNorm layer each way. torch.nn.SyncBatchNorm does the same on GPUs
only; this one runs under gloo on the CPU too, which is where it is tested.

Dropout (the fusion head): every rank's generator starts from the same seed and draws masks of
the same shapes, so the generators stay in step and the one state a checkpoint keeps resumes
every rank exactly. Rank r's masks for its rows repeat rank 0's: each sample's mask is still
independent of its data (the gradient is unbiased), but not the single-process run's masks.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from twostream.errors import DistributedError

# How long a rank waits for the others at a collective: rank 0 writes checkpoints (and fits the
# late-svm SVM) while the others wait; torch's defaults (10 min for NCCL) would be too short for
# a large model file on a slow disk.
TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun launch: ``rank`` of ``size`` processes in all, the
    ``local_rank``-th on its machine (its GPU's index)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @staticmethod
    def from_env(env: Mapping[str, str] = os.environ) -> "World":
        """torchrun's RANK, WORLD_SIZE and LOCAL_RANK; World() (one process) when WORLD_SIZE is unset."""
        if "WORLD_SIZE" not in env:
            return World()
        values = {name: env.get(name, "") for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        try:
            rank, size, local = (int(v) for v in values.values())
        except ValueError:
            raise DistributedError("torchrun's environment is malformed: "
                                   + ", ".join(f"{k}={v!r}" for k, v in values.items())) from None
        if size < 1 or not 0 <= rank < size or not 0 <= local <= rank:
            raise DistributedError(f"torchrun's environment is inconsistent: rank {rank} (local {local}) "
                                   f"of a world of {size}")
        return World(rank, size, local)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs, writes checkpoints and evaluates."""
        return self.rank == 0

    def device(self, device: str) -> str:
        """The resolved ``device`` (twostream.devices) this rank trains on: "cuda" -> its own GPU,
        cuda:LOCAL_RANK. DistributedError where the machine has fewer GPUs than local ranks."""
        if not self.distributed or not device.startswith("cuda"):
            return device
        if device != "cuda":
            raise DistributedError(f"--device {device} names one GPU; under torchrun give --device cuda "
                                   "(each process takes the GPU of its local rank)")
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise DistributedError(f"local rank {self.local_rank} needs GPU {self.local_rank} but this machine has "
                                   f"{count}: start at most {count} processes per node (--nproc-per-node)")
        return f"cuda:{self.local_rank}"

    def check_batch(self, batch: int) -> None:
        """--batch is the global batch: it must split evenly among the processes."""
        if batch % self.size:
            raise DistributedError(f"--batch {batch} is the global batch and must divide evenly among the "
                                   f"{self.size} processes: give a multiple of {self.size}")

    def shard(self, rows: list) -> list:
        """This rank's rows of one global batch: the rank-th of ``size`` equal, contiguous slices."""
        per = len(rows) // self.size
        return rows[self.rank * per:(self.rank + 1) * per]

    def total(self, values: list[int], device: str) -> list[int]:
        """``values`` summed over every rank (counts for the epoch's figures); as given alone."""
        if not self.distributed:
            return values
        summed = torch.tensor(values, dtype=torch.int64, device=device)
        dist.all_reduce(summed)
        return summed.tolist()

    def barrier(self) -> None:
        """Wait for every rank (after rank 0 writes a checkpoint)."""
        if self.distributed:
            dist.barrier()


@contextlib.contextmanager
def process_group(world: World, device: str) -> Iterator[None]:
    """torch.distributed's default process group for the ``with`` block: NCCL between GPUs
    (``device`` cuda:LOCAL_RANK, from World.device), gloo on the CPU; nothing for one process.
    The rendezvous address comes from torchrun (MASTER_ADDR, MASTER_PORT)."""
    if not world.distributed:
        yield
        return
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", rank=world.rank, world_size=world.size, timeout=TIMEOUT,
                            device_id=torch.device(device) if cuda else None)
    try:
        yield
    finally:
        dist.destroy_process_group()


def parallel(module: nn.Module, world: World, device: str) -> nn.Module:
    """``module`` under DistributedDataParallel (gradients averaged over ranks; rank 0's weights
    broadcast once here); ``module`` itself for one process. Buffers are not re-broadcast each
    step: the BatchNorm statistics are the global batch's on every rank (sync_batchnorm), the
    rest are constants."""
    if not world.distributed:
        return module
    return DistributedDataParallel(module, device_ids=[device] if device.startswith("cuda") else None,
                                   forward_sync_buffers=False)


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) that gradients flow through: every rank's output is the sum of every
    rank's input, so the gradient of an input is the sum of every rank's output gradient."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        return _summed(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _summed(grad)


def _summed(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` summed over every rank."""
    summed = tensor.clone(memory_format=torch.contiguous_format)
    dist.all_reduce(summed)
    return summed


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training mode under a process group of more than one rank,
    normalises (N, C, H, W) with the mean and (biased) variance of the global batch, every
    rank's N rows, and updates the running statistics with them (unbiased variance, as
    BatchNorm2d); plain BatchNorm2d otherwise. The same parameters and buffers, so the same
    state_dict keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xf = x.float()  # statistics in fp32 under fp16 autocast, as BatchNorm2d keeps them
        var, mean = torch.var_mean(xf, dim=(0, 2, 3), unbiased=False)
        count = x.numel() // x.shape[1]
        local = torch.stack([torch.full_like(mean, count), mean, var * count])  # (3, C): n, mean, squared deviations
        rank, size = dist.get_rank(), dist.get_world_size()
        # Each rank's row in place, zeros elsewhere: the sum over ranks is every rank's statistics,
        # and the all-reduce's backward sums every rank's gradient for them.
        rows = torch.cat([local.new_zeros(rank, *local.shape), local[None], local.new_zeros(size - rank - 1, *local.shape)])
        n, means, squares = _SumOverRanks.apply(rows).unbind(1)  # (W, C) each
        total = n.sum(0)
        global_mean = (n * means).sum(0) / total
        global_var = (squares.sum(0) + (n * (means - global_mean) ** 2).sum(0)) / total  # Chan et al.'s merge
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(global_mean, momentum)
                self.running_var.lerp_(global_var * total / (total - 1), momentum)
        shape = (1, -1, 1, 1)
        y = (xf - global_mean.view(shape)) * torch.rsqrt(global_var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> None:
    """Turn every BatchNorm2d inside ``module`` into a GlobalBatchNorm2d that holds the same
    parameter and buffer tensors (an optimizer built on them, and the state_dict, see no change)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
            if child.affine:
                synced.weight, synced.bias = child.weight, child.bias
            if child.track_running_stats:
                synced.running_mean, synced.running_var = child.running_mean, child.running_var
                synced.num_batches_tracked = child.num_batches_tracked
            synced.train(child.training)
            setattr(module, name, synced)
        else:
            sync_batchnorm(child)
