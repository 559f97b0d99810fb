"""Classification helps regression: a regression loss plus cross-entropy on the discretised target."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.classification._batch import ClassificationBatch
from alignkit.registry import register_objective
from alignkit.types import LossOutput

PAPER = "A step towards understanding why classification helps regression"


def bin_edges(low: float, high: float, num_bins: int) -> Tensor:
    """``num_bins + 1`` equal-width edges over [low, high]."""
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2; got {num_bins}")
    if not high > low:
        raise ValueError(f"high ({high}) must exceed low ({low})")
    return torch.linspace(low, high, num_bins + 1, dtype=torch.float64)


def bin_index(values: Tensor, edges: Tensor) -> Tensor:
    """Bin of each value: bin k holds [e_k, e_{k+1}); the top edge belongs to the last bin; outside values clamp."""
    k = torch.bucketize(values.to(edges.dtype), edges[1:-1], right=True)
    return k.clamp(0, edges.numel() - 2)


def balanced_weights(bins: Tensor, num_bins: int) -> Tensor:
    """Per-sample weights (B,) that give every occupied bin the same total weight (mean weight 1).

    With them, the weighted mean of a per-sample loss equals the mean over occupied bins of the per-bin means.
    """
    counts = torch.bincount(bins, minlength=num_bins).to(torch.float64)
    occupied = int((counts > 0).sum())
    w = bins.numel() / (occupied * counts[bins])
    return w


def regression_readout(bin_logits: Tensor, edges: Tensor) -> Tensor:
    """The classification head's regression estimate: sum_k softmax(logits)_k * centre_k."""
    centres = ((edges[:-1] + edges[1:]) / 2).to(bin_logits.dtype)
    return torch.softmax(bin_logits, -1) @ centres


@register_objective(
    name="regression_plus_classification",
    aliases=("reg_cls",),
    paper=PAPER,
    arxiv="2308.10603",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_predictions", "class_targets"),
    optional={"class_logits": "no bin classifier: the loss is the regression loss alone (lam = 0)"},
    tags=("modality:tabular", "modality:vision", "regression", "imbalanced"),
    verification="paper-formula",
)
def regression_plus_classification(
    batch: ClassificationBatch,
    *,
    lam: float = 1.0,
    num_bins: int = 10,
    low: float = 0.0,
    high: float = 1.0,
    balanced: bool = False,
) -> LossOutput:
    """A step towards understanding why classification helps regression (Pintea, Lin, Dijkstra, van Gemert;
    ICCV 2023; arXiv:2308.10603).

    A regression network gains from an auxiliary classification head trained with cross-entropy on the target
    discretised into bins; the paper shows the gain comes from imbalanced targets, and relates it to a
    bin-balanced regression loss (``balanced=True`` reweights samples so every occupied bin counts equally).

    Formula:
        k_i = bin of y_i among num_bins equal-width bins over [low, high]
        w_i = 1 (default) or B / (#occupied bins * n_{k_i})      (balanced: each occupied bin has equal weight)
        L = (1/B) sum_i w_i (y_hat_i - y_i)^2 + lam * (1/B) sum_i w_i CE(bin_logits_i, k_i)
        read-out of the classifier: y~_i = sum_k softmax(bin_logits_i)_k * centre_k  (regression_readout)

    Hyper-parameters:
        lam: 1.0 — ours, because the paper adds the two losses without a tuned weight in its analysis.
        num_bins: 10 — ours (the paper varies the number of classes; 10 is its smallest common setting).
        low, high: 0.0, 1.0 — the target range to discretise (ours; set them to your data's range).
        balanced: False — the plain (imbalanced) losses; True is the paper's balanced counterpart.

    Inputs: ``predictions`` (B,) regression outputs, floating ``targets`` (B,), ``logits`` (B, num_bins).
    """
    pred = batch.need("predictions")
    y = batch.need("targets")
    if not y.is_floating_point() or y.shape != pred.shape or pred.dim() != 1:
        raise ValueError(
            f"regression_plus_classification needs (B,) float targets matching predictions; got targets "
            f"{tuple(y.shape)} {y.dtype}, predictions {tuple(pred.shape)}"
        )
    edges = bin_edges(low, high, num_bins)
    bins = bin_index(y, edges)
    w = balanced_weights(bins, num_bins).to(pred.dtype) if balanced else torch.ones_like(pred)
    reg = w * (pred - y).pow(2)
    losses = reg
    metrics = {"mse": float((pred - y).pow(2).mean().detach())}
    if batch.logits is not None and lam:
        if batch.logits.shape[1] != num_bins:
            raise ValueError(
                f"ClassificationBatch.logits must have num_bins={num_bins} columns; got {batch.logits.shape[1]}"
            )
        ce = F.cross_entropy(batch.logits, bins, reduction="none")
        losses = reg + lam * w * ce
        metrics["bin_ce"] = float(ce.mean().detach())
    return LossOutput(loss=losses.mean(), losses=losses, metrics=metrics)
