"""AlphaPO: SimPO with an alpha-shaped reward."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignkit.objectives.reference_free._common import finish, mean_logps, reference_free_terms
from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch


@register_objective(
    name="alphapo",
    verification="trl-parity",
    paper="AlphaPO: Reward Shape Matters for LLM Alignment",
    arxiv="2501.03884",
    needs_reference=False,
    aggregation="mean",
    batch_type=PreferenceBatch,
    tags=("paired", "reference-free", "algorithm:pairwise", "feedback:preference", "data:off-policy"),
)
def alphapo(
    batch: PreferenceBatch, *, beta: float = 2.5, gamma: float = 1.0, alpha: float = 0.25
) -> LossOutput:
    """AlphaPO: Reward Shape Matters for LLM Alignment (arXiv:2501.03884).

    SimPO's reward log p (p = exp of the average per-token log-prob) is replaced by the alpha-family
    r = (1 - p^(-alpha)) / alpha, which tends to log p as alpha -> 0; alpha shapes how fast the rejected
    likelihood is pushed down.

    Formula:
        p_w = exp(log pi(y_w)/|y_w|),  p_l = exp(log pi(y_l)/|y_l|)
        r(p) = (1 - p^(-alpha)) / alpha           (alpha = 0: r = log p, i.e. SimPO)
        L = -log sigma(beta (r(p_w) - r(p_l)) - gamma)

    Hyper-parameters:
        beta: 2.5 — reward scale (ours: the AlphaPO paper's per-model values could not be read here).
        gamma: 1.0 — target margin, TRL's ``simpo_gamma`` (ours: 1.0 as ``simpo``; TRL's default is 0.5).
        alpha: 0.25 — reward shape; the paper's tuned values lie in [0.1, 0.5] (verify per model).
    """
    t = reference_free_terms(batch, "alphapo")
    c, r = mean_logps(t, "alphapo")
    if alpha == 0.0:
        rc, rr = c, r
    else:
        rc = (1 - torch.exp(-alpha * c)) / alpha
        rr = (1 - torch.exp(-alpha * r)) / alpha
    pref = -F.logsigmoid(beta * (rc - rr) - gamma)
    return finish(t, pref, beta * rc, beta * rr)
