"""CDUL (and its reproducibility study): CLIP global-local similarity aggregation into soft multi-label
pseudo-labels, and the gradient-alignment update of those labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.registry import register

PAPER = (
    "Reproducibility Study of CDUL: CLIP-Driven Unsupervised Learning for Multi-Label Image Classification"
)
# The reproducibility report has no arXiv id we could confirm; the original CDUL paper is arXiv:2307.16634.
ARXIV = "2307.16634"


@register(
    name="cdul_pseudo_labels",
    kind="data_rule",
    family="adaptation",
    paper=PAPER,
    arxiv=ARXIV,
    tags=("pseudo-labels", "multi-label", "modality:vision"),
    verification="reconstruction",
)
def cdul_pseudo_labels(global_sim: Tensor, local_sims: Tensor, *, threshold: float = 0.5) -> Tensor:
    """Reproducibility Study of CDUL: CLIP-Driven Unsupervised Learning for Multi-Label Image Classification
    (original CDUL: arXiv:2307.16634): the global-local aggregation that initialises soft pseudo-labels.

    CLIP scores the whole image (global) and each crop (local) against every class prompt; a class that some
    crop sees confidently keeps its best crop score, otherwise its weakest, and the result is averaged with the
    global vector.

    Formula:
        s_g = global_sim (B, C)          (softmax over classes of CLIP image-text similarity)
        s_l = local_sims (B, J, C)       (the same per crop)
        a_c = max_j s_l[j, c]  if max_j s_l[j, c] >= threshold  else  min_j s_l[j, c]
        y = (s_g + a) / 2

    Hyper-parameters:
        threshold: 0.5 — zeta, the crop confidence above which the max is kept (recalled from the CDUL paper;
            not verified).

    Verification: reconstruction — the aggregation rule is recalled from the CDUL paper and not checked against
    the report's code (github.com/cs-mshah/CDUL); the report's own conclusions were not read (only its
    abstract). The CLIP forward passes are the caller's: this is a function of the similarity tensors.
    """
    if global_sim.dim() != 2 or local_sims.dim() != 3 or local_sims.shape[0] != global_sim.shape[0]:
        raise ValueError(
            f"global_sim must be (B, C) and local_sims (B, J, C); got {tuple(global_sim.shape)}, "
            f"{tuple(local_sims.shape)}"
        )
    if local_sims.shape[2] != global_sim.shape[1]:
        raise ValueError(
            f"local_sims has {local_sims.shape[2]} classes; global_sim has {global_sim.shape[1]}"
        )
    hi = local_sims.max(1).values
    lo = local_sims.min(1).values
    agg = torch.where(hi >= threshold, hi, lo)
    return (global_sim + agg) / 2


@register(
    name="cdul_label_update",
    kind="procedure",
    family="adaptation",
    paper=PAPER,
    arxiv=ARXIV,
    tags=("pseudo-labels", "multi-label", "modality:vision"),
    verification="reconstruction",
)
def cdul_label_update(labels: Tensor, logits: Tensor, *, label_lr: float = 1.0) -> Tensor:
    """Reproducibility Study of CDUL (original CDUL: arXiv:2307.16634): gradient-alignment training updates the
    soft pseudo-labels themselves by a gradient step on the same loss the network minimises, after the network
    step.

    Formula:
        L(y) = BCE(sigmoid(logits), y) = -(1/C) sum_c [y_c log s_c + (1 - y_c) log(1 - s_c)]
        y <- clip(y - label_lr * dL/dy, 0, 1)        (dL/dy_c = -(1/C) (logit_c))

    Hyper-parameters:
        label_lr: 1.0 — the label step size (ours; the paper's value was not read).

    Verification: reconstruction (loss and update rule recalled, not checked). Labels whose prediction agrees
    (logit 0 = probability 0.5) do not move; labels stay in [0, 1].
    """
    if labels.shape != logits.shape:
        raise ValueError(f"labels has shape {tuple(labels.shape)}; logits has {tuple(logits.shape)}")
    if ((labels < 0) | (labels > 1)).any():
        raise ValueError("labels must lie in [0, 1]")
    y = labels.detach().clone().requires_grad_(True)
    loss = F.binary_cross_entropy_with_logits(logits.detach(), y, reduction="none").mean(-1).sum()
    (grad,) = torch.autograd.grad(loss, y)
    return (y.detach() - label_lr * grad).clamp(0.0, 1.0)
