"""KTO: Kahneman-Tversky optimisation from unpaired desirable/undesirable examples."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives.unpaired._common import batch_kl, logratios, unpaired_metrics, weighted
from alignkit.registry import register_objective
from alignkit.types import LossOutput, UnpairedBatch


@register_objective(
    name="kto",
    verification="trl-parity",
    paper="KTO: Model Alignment as Prospect Theoretic Optimization",
    arxiv="2402.01306",
    batch_type=UnpairedBatch,
    requires=("kl_logps",),
    tags=("unpaired", "reference", "algorithm:pointwise", "feedback:binary", "data:off-policy"),
)
def kto(
    batch: UnpairedBatch, *, beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
) -> LossOutput:
    """KTO: Model Alignment as Prospect Theoretic Optimization (arXiv:2402.01306), Eq. 7.

    A Kahneman-Tversky value function of the implicit reward relative to a reference point z0, the batch
    estimate of KL(pi || ref) computed from mismatched prompt/completion pairs (no gradient, clamped at 0).

    Formula:
        r(x, y) = log pi(y|x) - log ref(y|x),  z0 = max(0, mean_j [log pi(y'_j|x_j) - log ref(y'_j|x_j)])
        desirable:   L = lambda_D (1 - sigma(beta (r - z0)))
        undesirable: L = lambda_U (1 - sigma(beta (z0 - r)))
        loss = mean over the batch

    Hyper-parameters:
        beta: 0.1 — risk-aversion / KL strength (TRL ``KTOConfig`` default).
        desirable_weight: 1.0 — lambda_D (TRL ``KTOConfig`` default; raise it when desirable examples are
            rarer, keeping lambda_D n_D / (lambda_U n_U) in [1, 4/3]).
        undesirable_weight: 1.0 — lambda_U (TRL ``KTOConfig`` default).
    """
    r = logratios(batch, "kto")
    z0 = batch_kl(batch, "kto")
    losses = weighted(
        batch,
        1 - torch.sigmoid(beta * (r - z0)),
        1 - torch.sigmoid(beta * (z0 - r)),
        desirable_weight,
        undesirable_weight,
    )
    metrics = unpaired_metrics(batch, beta * r)
    metrics["kl"] = z0.item()
    return LossOutput(loss=losses.mean(), losses=losses, metrics=metrics)


@register_objective(
    name="apo_zero_unpaired",
    verification="trl-parity",
    paper="Anchored Preference Optimization and Contrastive Revisions: Addressing Underspecification in Alignment",
    arxiv="2408.06266",
    batch_type=UnpairedBatch,
    tags=("unpaired", "reference", "algorithm:pointwise", "feedback:binary", "data:off-policy"),
)
def apo_zero_unpaired(
    batch: UnpairedBatch, *, beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
) -> LossOutput:
    """Anchored Preference Optimization and Contrastive Revisions (APO, arXiv:2408.06266): APO-zero on unpaired
    data — each completion is anchored at the reference on its own, no KL reference point.

    Formula:
        r = log pi(y|x) - log ref(y|x)
        desirable: L = 1 - sigma(beta r);   undesirable: L = sigma(beta r)

    Hyper-parameters:
        beta: 0.1 — reward temperature (TRL ``KTOConfig`` default).
        desirable_weight: 1.0 — weight of desirable examples (TRL ``KTOConfig`` default).
        undesirable_weight: 1.0 — weight of undesirable examples (TRL ``KTOConfig`` default).
    """
    r: Tensor = logratios(batch, "apo_zero_unpaired")
    losses = weighted(
        batch, 1 - torch.sigmoid(beta * r), torch.sigmoid(beta * r), desirable_weight, undesirable_weight
    )
    return LossOutput(loss=losses.mean(), losses=losses, metrics=unpaired_metrics(batch, beta * r))
