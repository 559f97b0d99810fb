"""Shared pieces of the policy-gradient objectives: rewards from a batch and baselines."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.batches_extra import extra
from alignkit.types import UnpairedBatch

BASELINES = ("leave_one_out", "mean", "none")


def rewards_of(batch: UnpairedBatch) -> Tensor:
    """(B,) or (B, P) rewards: a ``RewardedBatch``'s ``rewards``, else the labels as a 0/1 reward."""
    r = extra(batch, "rewards")
    return batch.labels.to(batch.side.seq.dtype) if r is None else r.to(batch.side.seq.dtype)


def baseline(batch: UnpairedBatch, rewards: Tensor, kind: str) -> Tensor:
    """b(x) per sample: the batch's explicit ``baselines`` if given, else computed within each prompt group
    (``group_ids``; no ids = one group): leave-one-out mean of the others' rewards (0 for a group of one), the
    group mean, or 0."""
    given = extra(batch, "baselines")
    if given is not None:
        return given.to(rewards.dtype)
    if kind not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}; got {kind!r}")
    if kind == "none":
        return torch.zeros_like(rewards)
    ids = extra(batch, "group_ids")
    ids = torch.zeros(rewards.shape[0], dtype=torch.long) if ids is None else ids.long()
    _, inv = torch.unique(ids, return_inverse=True)
    g = int(inv.max()) + 1
    sums = torch.zeros(g, dtype=rewards.dtype).index_add(0, inv, rewards)
    counts = torch.zeros(g, dtype=rewards.dtype).index_add(0, inv, torch.ones_like(rewards))
    if kind == "mean":
        return sums[inv] / counts[inv]
    n = counts[inv]
    return torch.where(n > 1, (sums[inv] - rewards) / (n - 1).clamp_min(1), torch.zeros_like(rewards))


def reinforce(batch: UnpairedBatch, rewards: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Per-sample REINFORCE surrogate -(R - b) log pi(y|x) (advantage without gradient) and the advantages."""
    adv = (rewards - baseline(batch, rewards, kind)).detach()
    return -adv * batch.side.seq, adv
