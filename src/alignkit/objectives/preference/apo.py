"""APO: anchored preference optimisation (zero and down anchors)."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective

_PAPER = (
    "Anchored Preference Optimization and Contrastive Revisions: Addressing Underspecification in Alignment"
)


@pairwise_objective(
    name="apo_zero", paper=_PAPER, arxiv="2408.06266", f_divergence=False, verification="trl-parity"
)
def apo_zero(t: PairTerms, *, beta: float = 0.1) -> Tensor:
    """Anchored Preference Optimization and Contrastive Revisions (APO, arXiv:2408.06266), APO-zero (Eq. 7).

    For data whose chosen answers are better than the model's own: raise the chosen likelihood, lower the
    rejected one, each anchored at the reference.

    Formula:
        r_w = beta log pi(y_w)/ref(y_w),  r_l = beta log pi(y_l)/ref(y_l)
        L = (1 - sigma(r_w)) + sigma(r_l)

    Hyper-parameters:
        beta: 0.1 — reward temperature (TRL ``DPOConfig`` default).
    """
    return 1 - torch.sigmoid(beta * t.chosen_logratios) + torch.sigmoid(beta * t.rejected_logratios)


@pairwise_objective(
    name="apo_down", paper=_PAPER, arxiv="2408.06266", f_divergence=False, verification="trl-parity"
)
def apo_down(t: PairTerms, *, beta: float = 0.1) -> Tensor:
    """Anchored Preference Optimization and Contrastive Revisions (APO, arXiv:2408.06266), APO-down (Eq. 8).

    For data whose chosen answers are worse than the model's own: lower both likelihoods, the rejected more.

    Formula:
        r_w = beta log pi(y_w)/ref(y_w),  r_l = beta log pi(y_l)/ref(y_l)
        L = sigma(r_w) + (1 - sigma(r_w - r_l))

    Hyper-parameters:
        beta: 0.1 — reward temperature (TRL ``DPOConfig`` default).
    """
    return (
        torch.sigmoid(beta * t.chosen_logratios)
        + 1
        - torch.sigmoid(beta * (t.chosen_logratios - t.rejected_logratios))
    )
