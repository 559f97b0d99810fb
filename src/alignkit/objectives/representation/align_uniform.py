"""Alignment and uniformity on the hypersphere: two losses (one objective) and the same two as metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.representation._batches import PairBatch, check_float, example
from alignkit.registry import register, register_objective
from alignkit.types import LossOutput

PAPER = (
    "Understanding Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere"
)
TAGS = ("contrastive", "modality:text", "modality:image", "modality:cross-modal")


def alignment_loss(x: Tensor, y: Tensor, alpha: float = 2.0) -> Tensor:
    """L_align = mean_i ||x_i - y_i||_2^alpha over positive pairs (x_i, y_i), inputs already normalised."""
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniformity_loss(x: Tensor, t: float = 2.0) -> Tensor:
    """L_uniform = log mean_{i<j} exp(-t ||x_i - x_j||_2^2), inputs already normalised (the official code's
    ``torch.pdist(x).pow(2).mul(-t).exp().mean().log()``)."""
    if x.shape[0] < 2:
        raise ValueError(f"uniformity needs at least 2 embeddings; got {x.shape[0]}")
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


@register(
    name="alignment",
    kind="metric",
    family="representation",
    paper=PAPER,
    arxiv="2005.10242",
    tags=("embedding-metric", *TAGS),
    verification="official-code-parity",
)
def alignment(x: Tensor, y: Tensor, *, alpha: float = 2.0, normalize: bool = True) -> float:
    """Understanding Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere
    (alignment metric, arXiv:2005.10242): how close positive pairs lie. Lower is better; 0 when every pair
    coincides, 4 (alpha = 2) when every pair is antipodal.

    Formula:
        L_align(alpha) = mean_i ||f(x_i) - f(y_i)||_2^alpha,  f L2-normalised

    Hyper-parameters:
        alpha: 2 — the paper's default (official code ``align_loss(x, y, alpha=2)``).
        normalize: True — L2-normalise the inputs first (the paper defines the metric on the unit sphere; the
            official code expects normalised inputs).
    """
    x = check_float("alignment", "x", x, dims=2)
    y = check_float("alignment", "y", y, dims=2)
    if x.shape != y.shape:
        raise ValueError(f"alignment: x has shape {tuple(x.shape)} but y has shape {tuple(y.shape)}")
    if normalize:
        x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return float(alignment_loss(x.detach(), y.detach(), alpha))


@register(
    name="uniformity",
    kind="metric",
    family="representation",
    paper=PAPER,
    arxiv="2005.10242",
    tags=("embedding-metric", *TAGS),
    verification="official-code-parity",
)
def uniformity(x: Tensor, *, t: float = 2.0, normalize: bool = True) -> float:
    """Understanding Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere
    (uniformity metric, arXiv:2005.10242): how evenly embeddings cover the sphere. Lower is better; 0 when all
    embeddings coincide (collapse), -t * 2 for two antipodal points.

    Formula:
        L_uniform(t) = log mean_{i<j} exp(-t ||f(x_i) - f(x_j)||_2^2),  f L2-normalised

    Hyper-parameters:
        t: 2 — the paper's default (official code ``uniform_loss(x, t=2)``).
        normalize: True — L2-normalise the inputs first (the paper's unit sphere, as ``alignment``).
    """
    x = check_float("uniformity", "x", x, dims=2)
    if normalize:
        x = F.normalize(x, dim=-1)
    return float(uniformity_loss(x.detach(), t))


@register_objective(
    name="align_uniform",
    aliases=("alignment_uniformity",),
    paper=PAPER,
    arxiv="2005.10242",
    family="representation",
    needs_reference=False,
    batch_type=PairBatch,
    requires=("paired_embeddings",),
    tags=TAGS,
    verification="official-code-parity",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation import PairBatch
batch = PairBatch(a=torch.randn(8, 16, requires_grad=True), b=torch.randn(8, 16))
out = ak.get("align_uniform")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def align_uniform(
    batch: PairBatch,
    *,
    alpha: float = 2.0,
    t: float = 2.0,
    align_weight: float = 1.0,
    unif_weight: float = 1.0,
) -> LossOutput:
    """Understanding Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere
    (arXiv:2005.10242): train directly on the two properties contrastive losses optimise asymptotically.

    Formula:
        x_i = a_i / ||a_i||, y_i = b_i / ||b_i||
        L = align_weight * mean_i ||x_i - y_i||^alpha + unif_weight * (L_uniform(x; t) + L_uniform(y; t)) / 2
        L_uniform(x; t) = log mean_{i<j} exp(-t ||x_i - x_j||^2)

    Hyper-parameters:
        alpha: 2 — official code default (SsnL/align_uniform ``align_loss``).
        t: 2 — official code default (``uniform_loss``).
        align_weight: 1 — official training script default (``--align_w 1``).
        unif_weight: 1 — official training script default (``--unif_w 1``).

    Per-example ``losses`` hold the alignment term of each pair (uniformity is a batch-level quantity).
    """
    x, y = F.normalize(batch.a, dim=-1), F.normalize(batch.b, dim=-1)
    per_pair = (x - y).norm(p=2, dim=1).pow(alpha)
    unif = (uniformity_loss(x, t) + uniformity_loss(y, t)) / 2
    loss = align_weight * per_pair.mean() + unif_weight * unif
    return LossOutput(
        loss=loss,
        losses=per_pair,
        metrics={"embedding/alignment": per_pair.mean().item(), "embedding/uniformity": unif.item()},
    )
