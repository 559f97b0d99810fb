"""Jaccard metric losses: soft Jaccard and the Jaccard metric loss (JML) that stays a metric under soft labels."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives.classification._batch import ClassificationBatch
from alignkit.registry import register_objective
from alignkit.types import LossOutput

PAPER = "Jaccard Metric Losses: Optimizing the Jaccard Index with Soft Labels"
CLASS_MODES = ("present", "all")
TAGS = ("modality:vision", "modality:tabular", "classification", "segmentation", "soft-labels")


def _per_class(x: Tensor, y: Tensor, kind: str, smooth: float) -> Tensor:
    """1 - Jaccard per class (C,), summing over the batch dimension (pixels, for segmentation)."""
    if kind == "soft":
        inter = (x * y).sum(0)
        union = x.sum(0) + y.sum(0) - inter
        return 1.0 - (inter + smooth) / (union + smooth)
    sx, sy, sd = x.sum(0), y.sum(0), (x - y).abs().sum(0)
    return 1.0 - (sx + sy - sd + smooth) / (sx + sy + sd + smooth)


def jaccard_loss_terms(
    probs: Tensor, targets: Tensor, *, kind: str, classes: str, smooth: float
) -> tuple[Tensor, Tensor]:
    """Per-class losses (C,) and the bool mask of the classes averaged (``present``: sum_b y_bc > 0)."""
    if classes not in CLASS_MODES:
        raise ValueError(f"classes must be one of {CLASS_MODES}; got {classes!r}")
    if probs.shape != targets.shape:
        raise ValueError(
            f"probabilities {tuple(probs.shape)} and soft targets {tuple(targets.shape)} differ in shape"
        )
    per_class = _per_class(probs, targets.to(probs.dtype), kind, smooth)
    mask = targets.sum(0) > 0 if classes == "present" else torch.ones_like(per_class, dtype=torch.bool)
    return per_class, mask


def _run(batch: ClassificationBatch, kind: str, classes: str, smooth: float) -> LossOutput:
    if batch.logits is not None:
        probs = torch.softmax(batch.logits, dim=-1)
    else:
        probs = batch.need("predictions")
        if probs.dim() != 2:
            raise ValueError(
                "ClassificationBatch.predictions must be (B, C) class probabilities for a Jaccard loss"
            )
    y = batch.soft_targets(probs.shape[1]) if batch.logits is not None else _soft(batch, probs.shape[1])
    per_class, mask = jaccard_loss_terms(probs, y, kind=kind, classes=classes, smooth=smooth)
    if not bool(mask.any()):
        raise ValueError("ClassificationBatch.targets: no class is present in this batch (classes='present')")
    loss = per_class[mask].mean()
    return LossOutput(
        loss=loss, losses=loss.expand(probs.shape[0]), metrics={"jaccard": float(1 - loss.detach())}
    )


def _soft(batch: ClassificationBatch, c: int) -> Tensor:
    t = batch.need("targets")
    return torch.nn.functional.one_hot(t, c).float() if not t.is_floating_point() else t


@register_objective(
    name="soft_jaccard",
    paper=PAPER,
    arxiv="2302.05666",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_targets",),
    optional={"class_logits": "probabilities are read from class_predictions instead of softmax(logits)"},
    tags=TAGS,
    verification="paper-formula",
)
def soft_jaccard(batch: ClassificationBatch, *, classes: str = "present", smooth: float = 1e-7) -> LossOutput:
    """Soft Jaccard loss, the baseline of Jaccard Metric Losses (Wang & Blaschko; arXiv:2302.05666).

    Formula:
        per class c over the batch:  SJ_c = 1 - sum_b x_bc y_bc / (sum_b x_bc + sum_b y_bc - sum_b x_bc y_bc)
        L = mean over classes (present ones by default) of SJ_c;   x = softmax(logits), y = targets
        (with soft y, SJ is not 0 at x = y: e.g. x = y = 0.5 gives 1 - 0.25 / 0.75 = 2/3)

    Hyper-parameters:
        classes: "present" — average over the classes present in the targets (the paper's default for
            segmentation, as in its JDTLosses code) or "all".
        smooth: 1e-7 — added to numerator and denominator (ours, because an empty class would divide 0 by 0).
    """
    return _run(batch, "soft", classes, smooth)


@register_objective(
    name="jaccard_metric_loss",
    aliases=("jml",),
    paper=PAPER,
    arxiv="2302.05666",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_targets",),
    optional={"class_logits": "probabilities are read from class_predictions instead of softmax(logits)"},
    tags=TAGS,
    verification="paper-formula",
)
def jaccard_metric_loss(
    batch: ClassificationBatch, *, classes: str = "present", smooth: float = 1e-7
) -> LossOutput:
    """Jaccard Metric Losses: Optimizing the Jaccard Index with Soft Labels (JML; Wang & Blaschko;
    arXiv:2302.05666).

    The soft Jaccard loss is not minimised at x = y when the labels are soft (label smoothing, distillation).
    JML writes the intersection and union with L1 norms, which agrees with soft Jaccard on hard labels, is 0
    exactly at x = y for any soft y, and is a metric.

    Formula:
        per class c over the batch:
        JML_c = 1 - (||x_c||_1 + ||y_c||_1 - ||x_c - y_c||_1) / (||x_c||_1 + ||y_c||_1 + ||x_c - y_c||_1)
        L = mean over classes (present ones by default) of JML_c;   x = softmax(logits), y = targets

    Hyper-parameters:
        classes: "present" — as soft_jaccard (the paper's JDTLosses default).
        smooth: 1e-7 — ours, as soft_jaccard.
    """
    return _run(batch, "metric", classes, smooth)
