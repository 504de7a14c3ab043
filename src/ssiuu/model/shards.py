"""Means over a batch that several processes hold in shards (``accelerate launch``).

Data-parallel training averages the processes' gradients. A loss that is a mean over
tokens must then be each shard's *total* over the whole batch's token count, times the
process count, for the averaged gradient to be the whole batch's; a per-shard mean would
weigh a shard with fewer answer tokens more. With one process these are plain means.
"""

from __future__ import annotations

import torch


def process_count() -> int:
    """How many processes share the batch (1 outside a distributed run)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def batch_count(count: torch.Tensor) -> torch.Tensor:
    """``count`` summed over the processes' shards (detached)."""
    total = count.detach().clone()
    if process_count() > 1:
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return total


def batch_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``total / count`` over the whole batch, as this shard's part of it (see the module)."""
    if process_count() == 1:
        return total / count
    return total * process_count() / batch_count(count)
