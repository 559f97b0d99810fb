"""Batch-hard (and batch-all) triplet loss, with the soft-margin variant (In Defense of the Triplet Loss)."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives.representation._batches import EmbeddingBatch, euclidean, example, same_label
from alignkit.registry import register_objective
from alignkit.types import LossOutput

PAPER = "In Defense of the Triplet Loss for Person Re-Identification"
TAGS = ("metric-learning", "modality:image", "modality:text", "triplet")
_EXAMPLE = """
import torch, alignkit as ak
from alignkit.objectives.representation import EmbeddingBatch
batch = EmbeddingBatch(embeddings=torch.randn(8, 4, requires_grad=True), labels=torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
out = ak.get("{name}")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""


def _triplet_term(violation: Tensor, soft: bool) -> Tensor:
    return torch.nn.functional.softplus(violation) if soft else violation.clamp_min(0)


@register_objective(
    name="batch_hard_triplet",
    aliases=("batch_hard", "triplet_batch_hard"),
    paper=PAPER,
    arxiv="1703.07737",
    family="representation",
    needs_reference=False,
    batch_type=EmbeddingBatch,
    requires=("embeddings", "labels"),
    tags=TAGS,
    verification="library-parity",
)
@example(_EXAMPLE.format(name="batch_hard_triplet"))
def batch_hard_triplet(batch: EmbeddingBatch, *, soft: bool = True, margin: float = 0.2) -> LossOutput:
    """In Defense of the Triplet Loss for Person Re-Identification (batch-hard triplet loss, arXiv:1703.07737).

    Each anchor of a P x K batch (P identities, K examples each) is paired with its hardest positive (the
    farthest example of its own label) and its hardest negative (the closest example of another label).

    Formula:
        D(a, b) = ||f(a) - f(b)||_2                          (Euclidean, not squared)
        v_a = max_{p: y_p = y_a, p != a} D(a, p) - min_{n: y_n != y_a} D(a, n)
        L = mean_a softplus(v_a)          (soft margin, soft=True)
        L = mean_a [margin + v_a]_+       (hard margin, soft=False)
        anchors without a positive or without a negative in the batch are left out.

    Hyper-parameters:
        soft: True — the soft-margin log(1 + exp(v)) the paper recommends (§2, "Soft-margin"), used for its
            main results.
        margin: 0.2 — the hinge margin when soft=False (ours, because the paper tunes it per dataset; the
            catalogue's 0.3 is another common choice). Ignored when soft=True.

    Equal to pytorch-metric-learning's ``TripletMarginLoss(margin=margin | 0, smooth_loss=soft,
    distance=LpDistance(normalize_embeddings=False), reducer=MeanReducer())`` with ``BatchHardMiner`` (tested).
    """
    d = euclidean(batch.embeddings, batch.embeddings)
    pos, neg = same_label(batch.labels)
    keep = pos.any(1) & neg.any(1)
    if not keep.any():
        raise ValueError(
            "EmbeddingBatch.labels: no anchor has both a positive and a negative in the batch "
            "(batch-hard needs at least two labels, one of them repeated)"
        )
    hardest_pos = torch.where(pos, d, torch.full_like(d, -torch.inf)).amax(1)
    hardest_neg = torch.where(neg, d, torch.full_like(d, torch.inf)).amin(1)
    violation = (hardest_pos - hardest_neg)[keep]
    losses = _triplet_term(violation if soft else violation + margin, soft)
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={
            "triplet/hardest_pos": hardest_pos[keep].mean().item(),
            "triplet/hardest_neg": hardest_neg[keep].mean().item(),
            "triplet/active_fraction": (violation + (0.0 if soft else margin) > 0).float().mean().item(),
        },
    )


@register_objective(
    name="batch_all_triplet",
    aliases=("triplet_batch_all",),
    paper=PAPER,
    arxiv="1703.07737",
    family="representation",
    needs_reference=False,
    batch_type=EmbeddingBatch,
    requires=("embeddings", "labels"),
    tags=TAGS,
    verification="library-parity",
)
@example(_EXAMPLE.format(name="batch_all_triplet"))
def batch_all_triplet(
    batch: EmbeddingBatch, *, soft: bool = False, margin: float = 0.2, nonzero_only: bool = False
) -> LossOutput:
    """In Defense of the Triplet Loss for Person Re-Identification (batch-all triplet loss, the baseline the
    paper compares batch-hard with, arXiv:1703.07737).

    Every valid triplet (a, p, n) of the batch contributes.

    Formula:
        v_apn = D(a, p) - D(a, n)   for all y_p = y_a (p != a), y_n != y_a
        L = mean_{(a,p,n)} [margin + v_apn]_+        (soft=True: softplus(v_apn))
        nonzero_only=True: the mean runs over the triplets with a non-zero loss ("BA!=0" in the paper).

    Hyper-parameters:
        soft: False — hinge (the paper's batch-all rows use a margin).
        margin: 0.2 — hinge margin (ours, see batch_hard_triplet).
        nonzero_only: False — average over all valid triplets (True is the paper's BA!=0 variant and
            pytorch-metric-learning's default ``AvgNonZeroReducer``).

    Equal to pytorch-metric-learning's ``TripletMarginLoss`` with all triplets (no miner), tested.
    """
    d = euclidean(batch.embeddings, batch.embeddings)
    pos, neg = same_label(batch.labels)
    valid = pos.unsqueeze(2) & neg.unsqueeze(1)  # (a, p, n)
    if not valid.any():
        raise ValueError("EmbeddingBatch.labels: the batch holds no valid triplet (a, p, n)")
    v = (d.unsqueeze(2) - d.unsqueeze(1))[valid]
    losses = _triplet_term(v if soft else v + margin, soft)
    if nonzero_only:
        nz = losses > 0
        loss = losses[nz].mean() if nz.any() else losses.sum() * 0.0
    else:
        loss = losses.mean()
    return LossOutput(
        loss=loss,
        losses=losses,
        metrics={
            "triplet/active_fraction": (losses > 0).float().mean().item(),
            "triplet/count": float(v.numel()),
        },
    )
