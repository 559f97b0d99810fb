"""Contextual similarity: metric learning to rank with a differentiable Jaccard similarity of neighbourhoods."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.representation._batches import EmbeddingBatch, example
from alignkit.registry import register_objective
from alignkit.types import LossOutput


class _GreaterThan(torch.autograd.Function):
    """1[x >= y] with a straight-through gradient of slope g = 10 (the official ``GreaterThan``)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, y: Tensor) -> Tensor:  # noqa: D102
        return (x >= y).to(x.dtype)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, Tensor]:  # noqa: D102
        return grad * 10.0, -(grad * 10.0).sum(-1, keepdim=True)


def contextual_similarity(scores: Tensor, k: int = 4, eps: float = 0.05) -> Tensor:
    """The symmetric contextual (soft-Jaccard) similarity (N, N) of cosine ``scores`` (N, N), as the official
    ``get_jaccard_similarity``: k-neighbourhood masks N_k, their overlaps, averaged over the reciprocal
    k/2-neighbourhood."""
    if not 2 <= k <= scores.shape[0]:
        raise ValueError(f"k must be in [2, batch size {scores.shape[0]}]; got {k}")
    d = (2.0 - 2.0 * scores).clamp(min=0.0)
    vk, _ = (-d).topk(k)
    nk = _GreaterThan.apply(-d + eps, vk[:, -1:].detach())
    inter = (nk @ nk.T) / nk.sum(1, keepdim=True).detach()
    nk_not = 1.0 - nk
    inter_not = (nk_not @ nk_not.T) / nk_not.sum(1, keepdim=True).detach()
    w_tilde = 0.5 * (inter + inter_not) * nk
    nk2 = _GreaterThan.apply(-d + eps, vk[:, (k // 2) - 1 : (k // 2)].detach())
    rk2 = nk2 * nk2.T
    js = (rk2 @ w_tilde) / rk2.sum(1, keepdim=True)
    return 0.5 * (js + js.T)


@register_objective(
    name="contextual_similarity",
    aliases=("contextual_loss", "hybrid_contextual"),
    paper="Supervised Metric Learning to Rank for Retrieval via Contextual Similarity Optimization",
    arxiv="2210.01908",
    family="representation",
    needs_reference=False,
    batch_type=EmbeddingBatch,
    requires=("embeddings", "labels"),
    tags=("metric-learning", "retrieval", "modality:image", "modality:text"),
    verification="official-code-parity",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation import EmbeddingBatch
batch = EmbeddingBatch(embeddings=torch.randn(8, 4, requires_grad=True), labels=torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
out = ak.get("contextual_similarity")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def contextual_similarity_loss(
    batch: EmbeddingBatch,
    *,
    lam: float = 0.4,
    gamma: float = 0.1,
    k: int = 4,
    eps: float = 0.05,
    pos_margin: float = 0.75,
    neg_margin: float = 0.6,
    reg_sim: float = 0.25,
) -> LossOutput:
    """Supervised Metric Learning to Rank for Retrieval via Contextual Similarity Optimization (arXiv:2210.01908).

    Optimises the contextual similarity (overlap of k-nearest-neighbour sets) besides the cosine similarity.

    Formula:
        S = x x^T (x L2-normalised), w_ij = 1[y_i = y_j]
        J = contextual_similarity(S; k, eps)          (soft Jaccard of k-NN sets, symmetrised)
        L_ctx = sum_{i != j} ( w_ij (1 - J_ij)^2 + (1 - w_ij) J_ij^2 ) / N^2
        L_con = mean_{active} [pos_margin - S_ij]_+ w_ij + mean_{active} [S_ij - neg_margin]_+ (1 - w_ij)
        L_reg = (mean_ij S_ij - reg_sim)^2
        L = lam L_ctx + gamma L_reg + (1 - lam - gamma) L_con

    Hyper-parameters:
        lam: 0.4 — official ``main.py`` default ``--lam 0.4``.
        gamma: 0.1 — official ``--gamma 0.1``.
        k: 4 — neighbourhood size (official ``contrastive_jaccard`` uses k=4).
        eps: 0.05 — official ``--eps 0.05``.
        pos_margin: 0.75, neg_margin: 0.6 — official ``--pos_margins 0.75 --neg_margins 0.6``.
        reg_sim: 0.25 — official ``--reg_sim 0.25``.

    Equal to the official code (Chris210634/metric-learning-using-contextual-similarity ``losses.py``,
    restated in the test). "active" = the pairs with a non-zero hinge, as there.
    """
    x = F.normalize(batch.embeddings, dim=-1)
    s = x @ x.T
    w = (batch.labels.unsqueeze(0) == batch.labels.unsqueeze(1)).to(s.dtype)
    n = s.shape[0]
    js = contextual_similarity(s, k=k, eps=eps)
    off = 1.0 - torch.eye(n, dtype=s.dtype, device=s.device)
    per_pair = ((1.0 - js).square() * w + js.square() * (1.0 - w)) * off
    l_ctx = per_pair.sum() / n / n
    l_reg = (s.mean() - reg_sim).square()
    lp = F.relu(pos_margin - s) * w
    ln = F.relu(s - neg_margin) * (1.0 - w)
    l_con = (lp.sum() / (lp > 0).sum() if (lp > 0).any() else s.sum() * 0) + (
        ln.sum() / (ln > 0).sum() if (ln > 0).any() else s.sum() * 0
    )
    loss = lam * l_ctx + gamma * l_reg + (1.0 - lam - gamma) * l_con
    return LossOutput(
        loss=loss,
        losses=per_pair.sum(1) / n,
        metrics={
            "contextual/ctx": l_ctx.item(),
            "contextual/con": l_con.item(),
            "contextual/reg": l_reg.item(),
        },
    )
