"""Shared pieces of the harmful-fine-tuning defences: a second data stream, a default SFT loss, snapshots."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

#: One example of a second stream: ``(prompt_ids, completion_ids)``.
Pair = tuple[Sequence[int], Sequence[int]]
#: ``loss_fn(ctx, pairs) -> scalar`` on a batch of a second stream (``ctx`` is the trainer's ``TrainContext``).
StreamLoss = Callable[[Any, list[Pair]], Tensor]


def check_pairs(pairs: Sequence[Pair], what: str) -> list[Pair]:
    """Validate a second data stream; errors name the field and row."""
    out: list[Pair] = []
    if len(pairs) == 0:
        raise ValueError(f"{what}: needs at least one (prompt_ids, completion_ids) pair")
    for i, row in enumerate(pairs):
        if not isinstance(row, (tuple, list)) or len(row) != 2:
            raise ValueError(
                f"{what} row {i}: expected (prompt_ids, completion_ids), got {type(row).__name__}"
            )
        p, c = row
        if len(p) == 0:
            raise ValueError(f"{what} row {i}: field 'prompt_ids' is empty")
        if len(c) == 0:
            raise ValueError(f"{what} row {i}: field 'completion_ids' is empty")
        out.append((list(p), list(c)))
    return out


def sft_nll(ctx: Any, pairs: list[Pair]) -> Tensor:
    """Token-mean negative log-likelihood of the completions under the policy (``ctx.score``)."""
    lp = ctx.score([p for p, _ in pairs], [c for _, c in pairs])
    mask = lp.mask.to(lp.logps.dtype)
    return -(lp.logps * mask).sum() / mask.sum().clamp_min(1.0)


class Stream:
    """Cycle through a list of pairs in batches, reshuffled (seeded) every pass, like a DataLoader."""

    def __init__(self, pairs: Sequence[Pair], batch_size: int, seed: int, what: str) -> None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"{what}: batch_size must be a positive integer, got {batch_size!r}")
        self.pairs = check_pairs(pairs, what)
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.order: list[int] = []

    def next(self) -> list[Pair]:
        out: list[Pair] = []
        while len(out) < self.batch_size:
            if not self.order:
                self.order = torch.randperm(len(self.pairs), generator=self.gen).tolist()
            out.append(self.pairs[self.order.pop(0)])
        return out


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in trainable(model)}


def take_grads(model: nn.Module) -> dict[str, Tensor | None]:
    """Remove and return the accumulated ``.grad`` of every trainable parameter."""
    out: dict[str, Tensor | None] = {}
    for n, p in trainable(model):
        out[n] = p.grad
        p.grad = None
    return out


def global_norm(tensors: Sequence[Tensor]) -> Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.float()) for t in tensors]))


def ceil_count(rate: float, n: int) -> int:
    return min(n, math.ceil(rate * n))
