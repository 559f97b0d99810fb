"""Squentropy: cross-entropy plus the average square loss on the incorrect classes' logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.classification._batch import ClassificationBatch
from alignkit.registry import register_objective
from alignkit.types import LossOutput

PAPER = "Cut your Losses with Squentropy"


def squentropy_terms(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-example squentropy (B,): CE(z, y) + (1 / (C - 1)) sum_{j != y} z_j^2 on raw logits ``z``."""
    c = logits.shape[-1]
    if c < 2:
        raise ValueError(f"squentropy needs at least 2 classes; logits have {c}")
    ce = F.cross_entropy(logits, targets, reduction="none")
    wrong = torch.ones_like(logits, dtype=torch.bool).scatter_(1, targets[:, None], False)
    square = (logits.pow(2) * wrong).sum(-1) / (c - 1)
    return ce + square


@register_objective(
    name="squentropy",
    paper=PAPER,
    arxiv="2302.03952",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_logits", "class_targets"),
    tags=("modality:tabular", "modality:vision", "classification", "calibration"),
    verification="paper-formula",
)
def squentropy(batch: ClassificationBatch) -> LossOutput:
    """Cut your Losses with Squentropy (Hui, Belkin, Wright; arXiv:2302.03952).

    Squentropy adds to cross-entropy the average square loss of the incorrect classes' *logits*, which pulls
    them towards 0; the paper reports accuracy on par with CE and better calibration.

    Formula:
        L(z, y) = -log softmax(z)_y + (1 / (C - 1)) * sum_{j != y} z_j^2      (z: raw logits, C classes)
        batch loss = mean over examples

    Hyper-parameters:
        none — the paper's loss has no weight or temperature (abstract: "the sum of the cross-entropy loss and
        the average square loss over the incorrect classes").

    Inputs: ``logits`` (B, C) and integer ``targets`` (B,).
    """
    logits = batch.need("logits")
    losses = squentropy_terms(logits, batch.class_ids())
    ce = F.cross_entropy(logits.detach(), batch.class_ids())
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={"ce": float(ce.detach()), "loss": float(losses.detach().mean())},
    )
