"""torch.distributed for the embedding trainer: process group set-up and an all-gather that keeps gradients.

With in-batch negatives the loss of a rank depends on every rank's embeddings. :func:`gather_with_grad`
concatenates all ranks' embeddings (rank order) with a backward that returns to each rank the summed gradient
of its own rows, so every rank computes the loss of the *global* batch; the trainer then averages parameter
gradients over ranks (all-reduce / world), which gives exactly the gradient of one process with the global batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor


def setup() -> tuple[int, int]:
    """(rank, world size); starts a process group (gloo on CPU, nccl on GPU) under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather in forward; in backward every rank's gradient of the gathered tensor is summed over ranks
    (all-reduce) and each rank keeps the rows it contributed. Every rank must contribute the same number of rows."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:  # noqa: D102
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rows, ctx.rank = x.shape[0], rank  # type: ignore[attr-defined]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:  # noqa: D102
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        n, r = ctx.rows, ctx.rank  # type: ignore[attr-defined]
        return grad[r * n : (r + 1) * n]


def gather_with_grad(x: Tensor) -> Tensor:
    """All ranks' ``x`` concatenated along dim 0 (rank order), differentiable; ``x`` itself in one process."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """All-reduce the parameter gradients and divide by the world size (a no-op in one process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)
