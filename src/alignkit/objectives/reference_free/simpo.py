"""SimPO: length-normalised, reference-free DPO with a target margin."""

from __future__ import annotations

import torch.nn.functional as F

from alignkit.objectives.reference_free._common import chosen_nll, finish, mean_logps, reference_free_terms
from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch


@register_objective(
    name="simpo",
    verification="trl-parity",
    paper="SimPO: Simple Preference Optimization with a Reference-Free Reward",
    arxiv="2405.14734",
    needs_reference=False,
    aggregation="mean",
    batch_type=PreferenceBatch,
    tags=("paired", "reference-free", "algorithm:pairwise", "feedback:preference", "data:off-policy"),
)
def simpo(
    batch: PreferenceBatch,
    *,
    beta: float = 2.0,
    gamma: float = 1.0,
    label_smoothing: float = 0.0,
    cpo_alpha: float = 0.0,
) -> LossOutput:
    """SimPO: Simple Preference Optimization with a Reference-Free Reward (arXiv:2405.14734), Eq. 6.

    The implicit reward is the average per-token log-prob, beta/|y| log pi(y|x); a target margin gamma
    separates chosen from rejected. No reference model.

    Formula:
        u = log pi(y_w|x)/|y_w| - log pi(y_l|x)/|y_l|
        L = -(1 - eps) log sigma(beta u - gamma) - eps log sigma(-(beta u - gamma)) [+ alpha NLL(y_w)]

    Hyper-parameters:
        beta: 2.0 — reward scale (the paper's base-model settings use 2.0).
        gamma: 1.0 — target reward margin (the paper's Llama-3-Base setting; TRL's simpo_gamma).
        label_smoothing: 0.0 — eps (TRL ``CPOConfig`` default; 0 = the paper's loss).
        cpo_alpha: 0.0 — optional NLL weight (CPO-SimPO); SimPO's paper has none (TRL ``CPOConfig`` defaults
            it to 1.0 for every loss type; pass 0 there for SimPO).
    """
    t = reference_free_terms(batch, "simpo")
    c, r = mean_logps(t, "simpo")
    z = beta * (c - r) - gamma
    pref = -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    nll = chosen_nll(t) if cpo_alpha else None
    return finish(t, pref, beta * c, beta * r, nll, cpo_alpha)
