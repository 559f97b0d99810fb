"""Z-Error: mask the samples whose error is a batch z-score outlier, then average the rest."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.classification._batch import ClassificationBatch
from alignkit.registry import register_objective
from alignkit.types import LossOutput

PAPER = "Z-Error Loss for Training Neural Networks"


def z_error_mask(errors: Tensor, tau: float, eps: float = 1e-8) -> Tensor:
    """Bool mask (B,) of the samples kept: |z_i| <= tau, z_i = (e_i - mean(e)) / (std(e) + eps), std unbiased.

    Computed without gradient (the mask is a selection, not a function to differentiate)."""
    if errors.dim() != 1:
        raise ValueError(f"errors must be 1-D (one per sample); got {tuple(errors.shape)}")
    if errors.numel() < 2:
        return torch.ones_like(errors, dtype=torch.bool)
    e = errors.detach()
    z = (e - e.mean()) / (e.std(unbiased=True) + eps)
    return z.abs() <= tau


@register_objective(
    name="z_error",
    paper=PAPER,
    arxiv="2506.02154",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_targets",),
    optional={
        "class_predictions": "with logits instead: per-sample cross-entropy is the error (classification)",
        "class_logits": "with predictions instead: the residual y - y_hat is the error (Z-MSE, regression)",
    },
    tags=("modality:tabular", "regression", "classification", "robust", "outliers"),
    verification="reconstruction",
)
def z_error(batch: ClassificationBatch, *, tau: float = 2.0) -> LossOutput:
    """Z-Error Loss for Training Neural Networks (Godin; arXiv:2506.02154).

    Within each batch, samples whose error lies more than tau standard deviations from the batch mean are
    treated as outliers and masked out of the loss (and reported, as candidates for data curation).

    Formula:
        regression (predictions):  e_i = y_i - y_hat_i (mean over output dims),  l_i = (y_i - y_hat_i)^2
        classification (logits):   l_i = CE(h_i, y_i),  e_i = l_i
        z_i = (e_i - mean_j e_j) / (std_j e_j + eps)        (std unbiased, over the batch, no gradient)
        m_i = 1[|z_i| <= tau]
        L = sum_i m_i l_i / sum_i m_i

    Hyper-parameters:
        tau: 2.0 — the threshold of the paper's (a technical note's) worked example (reconstruction: the note
            is summarised by secondary sources; an annealed tau is not implemented).
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive; got {tau}")
    targets = batch.need("targets")
    if batch.predictions is not None:
        if not targets.is_floating_point():
            raise ValueError(
                "z_error with predictions needs floating regression values in ClassificationBatch.targets"
            )
        pred = batch.predictions
        if targets.shape != pred.shape:
            raise ValueError(
                f"ClassificationBatch.targets {tuple(targets.shape)} must match predictions {tuple(pred.shape)}"
            )
        resid = (targets - pred).reshape(pred.shape[0], -1)
        losses = resid.pow(2).mean(-1)
        errors = resid.mean(-1)
    else:
        losses = F.cross_entropy(batch.need("logits"), batch.class_ids(), reduction="none")
        errors = losses
    keep = z_error_mask(errors, tau)
    w = keep.to(losses.dtype)
    loss = (losses * w).sum() / w.sum().clamp_min(1.0)
    return LossOutput(
        loss=loss,
        losses=losses * w,
        metrics={"masked_fraction": float(1 - w.mean()), "loss_unmasked_mean": float(losses.detach().mean())},
    )
