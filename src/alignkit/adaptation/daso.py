"""DASO: distribution-aware semantics-oriented pseudo-labels for imbalanced semi-supervised learning."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.registry import register, register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

PAPER = "DASO: Distribution-Aware Semantics-Oriented Pseudo-label for Imbalanced Semi-Supervised Learning"
ARXIV = "2106.05682"

register_field(
    "class_prototypes",
    "class prototypes (C, D): per-class means of labelled features (DASO keeps a balanced queue of EMA features)",
    computed="mean of the labelled features of each class",
)
register_field(
    "pseudo_label_distribution",
    "the running class distribution (C,) of the pseudo-labels over the last period",
    computed="counts of the final pseudo-labels, refreshed every PL_DIST_UPDATE_PERIOD steps",
)


def semantic_probs(features: Tensor, prototypes: Tensor, proto_temperature: float = 0.05) -> Tensor:
    """softmax_c(cos(z, prototype_c) / T_proto) (B, C): the semantic (similarity-based) classifier."""
    sim = F.cosine_similarity(features.unsqueeze(1), prototypes.unsqueeze(0), dim=-1)
    return (sim / proto_temperature).softmax(-1)


def distribution_weights(pl_distribution: Tensor, dist_temperature: float = 1.5) -> Tensor:
    """v_c = (m_c^(1/T) / sum m^(1/T)) / max_k (...): 1 for the most frequent pseudo-label class."""
    if (pl_distribution < 0).any() or pl_distribution.sum() <= 0:
        raise ValueError("pl_distribution must be non-negative with a positive sum")
    v = pl_distribution.double() ** (1.0 / dist_temperature)
    v = v / v.sum()
    return (v / v.max()).to(pl_distribution.dtype if pl_distribution.is_floating_point() else torch.float32)


@register(
    name="daso_pseudo_labels",
    kind="data_rule",
    family="adaptation",
    paper=PAPER,
    arxiv=ARXIV,
    tags=("semi-supervised", "imbalanced", "modality:any"),
    verification="paper-formula",
)
def daso_pseudo_labels(
    linear_probs: Tensor,
    semantic: Tensor,
    pl_distribution: Tensor,
    *,
    dist_temperature: float = 1.5,
) -> Tensor:
    """DASO: Distribution-Aware Semantics-Oriented Pseudo-label for Imbalanced Semi-Supervised Learning
    (arXiv:2106.05682): the blended pseudo-label.

    Linear-classifier pseudo-labels are biased towards head classes, similarity-based (semantic) ones towards
    tail classes. DASO blends them per sample with a weight that grows with how often the linear prediction's
    class appears among recent pseudo-labels: head predictions lean on the semantic label.

    Formula:
        c_hat = argmax p_lin
        v_c = (m_c^(1/T_dist) / sum_k m_k^(1/T_dist)) / max_k (...)      (m: pseudo-label class distribution)
        p_hat = (1 - v_{c_hat}) p_lin + v_{c_hat} p_sem

    Hyper-parameters:
        dist_temperature: 1.5 — T_dist (official configs/cifar10/fixmatch_daso.yaml ``DIST_TEMP: 1.5``; 0.3
            when the labelled and unlabelled imbalance differ).

    Source: official code ytaek-oh/daso ``lib/models/daso_model.py`` (restated; tested on hand values).
    """
    if linear_probs.shape != semantic.shape or linear_probs.dim() != 2:
        raise ValueError(
            f"linear_probs and semantic must both be (B, C); got {tuple(linear_probs.shape)}, {tuple(semantic.shape)}"
        )
    if pl_distribution.shape != (linear_probs.shape[1],):
        raise ValueError(
            f"pl_distribution must be ({linear_probs.shape[1]},); got {tuple(pl_distribution.shape)}"
        )
    v = distribution_weights(pl_distribution, dist_temperature).to(linear_probs.dtype)
    w = v[linear_probs.argmax(-1)].unsqueeze(-1)
    return (1 - w) * linear_probs + w * semantic


@dataclass
class SemiSupervisedBatch:
    """Unlabelled samples under a weak and a strong augmentation: classifier logits (B, C) and features (B, D)
    of each, the class prototypes (C, D) and the running pseudo-label class distribution (C,)."""

    logits_weak: Tensor
    logits_strong: Tensor
    features_weak: Tensor
    features_strong: Tensor
    prototypes: Tensor
    pl_distribution: Tensor

    def __post_init__(self) -> None:
        if self.logits_weak.dim() != 2 or self.logits_weak.shape != self.logits_strong.shape:
            raise ValueError(
                f"logits_weak and logits_strong must be the same (B, C); got {tuple(self.logits_weak.shape)}, "
                f"{tuple(self.logits_strong.shape)}"
            )
        b, c = self.logits_weak.shape
        if self.features_weak.dim() != 2 or self.features_weak.shape != self.features_strong.shape:
            raise ValueError("features_weak and features_strong must be the same (B, D)")
        if self.features_weak.shape[0] != b:
            raise ValueError(f"features_weak has {self.features_weak.shape[0]} rows; logits have {b}")
        if tuple(self.prototypes.shape) != (c, self.features_weak.shape[1]):
            raise ValueError(
                f"prototypes must be ({c}, {self.features_weak.shape[1]}); got {tuple(self.prototypes.shape)}"
            )
        if self.pl_distribution.shape != (c,):
            raise ValueError(f"pl_distribution must be ({c},); got {tuple(self.pl_distribution.shape)}")


def _example() -> str:
    return (
        "import torch, alignkit as ak\n"
        "from alignkit.adaptation import SemiSupervisedBatch\n"
        "lw, ls = torch.randn(8, 3) * 4, torch.randn(8, 3, requires_grad=True)\n"
        "batch = SemiSupervisedBatch(logits_weak=lw, logits_strong=ls, features_weak=torch.randn(8, 5),\n"
        "    features_strong=torch.randn(8, 5, requires_grad=True), prototypes=torch.randn(3, 5),\n"
        "    pl_distribution=torch.tensor([0.6, 0.3, 0.1]))\n"
        'out = ak.get("daso")(batch)\n'
        "out.loss.backward()\n"
        "print(out.loss, out.metrics)"
    )


@register_objective(
    name="daso",
    paper=PAPER,
    arxiv=ARXIV,
    family="adaptation",
    batch_type=SemiSupervisedBatch,
    requires=("class_logits", "features", "class_prototypes", "pseudo_label_distribution"),
    needs_reference=False,
    aggregation="mean",
    tags=(
        "semi-supervised",
        "imbalanced",
        "modality:any",
        "algorithm:pointwise",
        "feedback:self-supervised",
        "data:off-policy",
    ),
    verification="paper-formula",
)
def daso(
    batch: SemiSupervisedBatch,
    *,
    proto_temperature: float = 0.05,
    dist_temperature: float = 1.5,
    confidence_threshold: float = 0.95,
    align_weight: float = 1.0,
) -> LossOutput:
    """DASO: Distribution-Aware Semantics-Oriented Pseudo-label for Imbalanced Semi-Supervised Learning
    (arXiv:2106.05682): the unlabelled-data loss of FixMatch + DASO.

    The weak view's linear and semantic predictions blend into the pseudo-label (``daso_pseudo_labels``); the
    strong view is trained on it where it is confident (FixMatch consistency), and the strong view's semantic
    prediction is aligned to the weak view's (semantic alignment loss).

    Formula:
        p_lin = softmax(logits_weak),  p_sem(z) = softmax_c(cos(z, proto_c) / T_proto)
        p_hat = (1 - v_{c_hat}) p_lin + v_{c_hat} p_sem(z_weak)      (see daso_pseudo_labels)
        L_cons  = (1/B) sum_i [max p_hat_i >= tau] CE(logits_strong_i, argmax p_hat_i)
        L_align = (1/B) sum_i H(p_sem(z_weak_i), p_sem(z_strong_i))   (cross-entropy; weak side detached)
        L = L_cons + align_weight * L_align

    Hyper-parameters:
        proto_temperature: 0.05 — T_proto (paper §4 as recalled; the config default was not read).
        dist_temperature: 1.5 — T_dist (official configs/cifar10/fixmatch_daso.yaml ``DIST_TEMP``).
        confidence_threshold: 0.95 — tau (same config ``CONFIDENCE_THRESHOLD``).
        align_weight: 1.0 — weight of the semantic alignment loss (same config ``PSA_LOSS_WEIGHT``).

    Source: official code ytaek-oh/daso ``lib/models/daso_model.py`` ``forward_train`` (restated). The labelled
    cross-entropy and the prototype queue are the caller's.
    """
    with torch.no_grad():
        p_lin = batch.logits_weak.softmax(-1)
        sem_weak = semantic_probs(batch.features_weak, batch.prototypes, proto_temperature)
        p_hat = daso_pseudo_labels(p_lin, sem_weak, batch.pl_distribution, dist_temperature=dist_temperature)
        conf, target = p_hat.max(-1)
        keep = (conf >= confidence_threshold).to(batch.logits_strong.dtype)
    cons = F.cross_entropy(batch.logits_strong, target, reduction="none") * keep
    sim_strong = F.cosine_similarity(
        batch.features_strong.unsqueeze(1), batch.prototypes.unsqueeze(0), dim=-1
    )
    align = -(sem_weak * F.log_softmax(sim_strong / proto_temperature, dim=-1)).sum(-1)
    losses = cons + align_weight * align
    return LossOutput(
        loss=losses.mean(),
        losses=losses.detach(),
        metrics={
            "loss_cons": float(cons.detach().mean()),
            "loss_align": float(align.detach().mean()),
            "mask_ratio": float(keep.mean()),
        },
        state={},
    )


daso.fn.example = _example()
