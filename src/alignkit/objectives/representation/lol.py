"""LoL: a comparative regulariser over the losses of query revisions that use more and more feedback."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from alignkit.objectives.representation._batches import check_float, example
from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

register_field(
    "revision_losses",
    "per-query reformulation losses of m revisions, (B, m), ordered by the amount of feedback used (LossSetBatch)",
)


@dataclass
class LossSetBatch:
    """``losses`` (B, m): the reformulation (retrieval) loss of m revisions of each query, revision i using
    k_i feedback documents with k_1 < k_2 < ... < k_m (computed, with gradient, by the caller's model)."""

    losses: Tensor

    def __post_init__(self) -> None:
        self.losses = check_float("LossSetBatch", "losses", self.losses, dims=2)
        if self.losses.shape[1] < 2:
            raise ValueError(
                f"LossSetBatch.losses needs at least 2 revisions (columns); got {self.losses.shape[1]}"
            )


@register_objective(
    name="loss_over_loss",
    aliases=("lol",),
    paper="LoL: A Comparative Regularization Loss over Query Reformulation Losses for Pseudo-Relevance Feedback",
    arxiv="2204.11545",
    family="representation",
    needs_reference=False,
    batch_type=LossSetBatch,
    requires=("revision_losses",),
    tags=("retrieval", "regulariser", "modality:text"),
    verification="paper-formula",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation.lol import LossSetBatch
batch = LossSetBatch(losses=torch.rand(4, 3, requires_grad=True))
out = ak.get("loss_over_loss")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def loss_over_loss(batch: LossSetBatch, *, gamma: float = 1.0) -> LossOutput:
    """LoL: A Comparative Regularization Loss over Query Reformulation Losses for Pseudo-Relevance Feedback
    (arXiv:2204.11545).

    A revision that reads more feedback documents should not do worse than one that reads fewer: each
    violation of that order is penalised by how much the losses are inverted.

    Formula:
        L_b = sum_i l_{b,i} + gamma * sum_{i < j} [l_{b,j} - l_{b,i}]_+     (revision j uses more feedback than i)
        L = mean_b L_b

    Hyper-parameters:
        gamma: 1.0 — weight of the comparative term (ours, because the paper tunes it; 1 weighs the
            regulariser like one reformulation loss).

    Non-increasing losses along the feedback order give a zero regulariser; the gradient of the regulariser
    reaches only the revisions of violating pairs.
    """
    lo = batch.losses
    diff = lo.unsqueeze(1) - lo.unsqueeze(2)  # [b, i, j] = l_j - l_i
    m = lo.shape[1]
    upper = torch.triu(torch.ones(m, m, dtype=torch.bool, device=lo.device), diagonal=1)
    reg = (diff.clamp_min(0) * upper).sum((1, 2))
    losses = lo.sum(1) + gamma * reg
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={
            "lol/regulariser": reg.mean().item(),
            "lol/violations": (diff > 0)[:, upper].float().mean().item(),
        },
    )
