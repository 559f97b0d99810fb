"""ORPO: odds-ratio preference optimisation, monolithic (SFT + odds-ratio penalty)."""

from __future__ import annotations

import torch.nn.functional as F

from alignkit.objectives._math import log_odds
from alignkit.objectives.reference_free._common import chosen_nll, finish, mean_logps, reference_free_terms
from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch


@register_objective(
    name="orpo",
    verification="trl-parity",
    paper="ORPO: Monolithic Preference Optimization without Reference Model",
    arxiv="2403.07691",
    needs_reference=False,
    aggregation="mean",
    batch_type=PreferenceBatch,
    tags=(
        "paired",
        "reference-free",
        "algorithm:pairwise",
        "feedback:preference",
        "data:off-policy",
        "one-stage",
    ),
)
def orpo(batch: PreferenceBatch, *, beta: float = 0.1) -> LossOutput:
    """ORPO: Monolithic Preference Optimization without Reference Model (arXiv:2403.07691), Eqs. 4-7.

    SFT on the chosen response plus a penalty on the log odds ratio of chosen to rejected; probabilities are
    length-normalised, P(y|x) = exp(log pi(y|x)/|y|).

    Formula:
        odds(y) = P(y|x) / (1 - P(y|x))
        L = NLL_token_mean(y_w) - lambda * mean_B[log sigma(log odds(y_w) - log odds(y_l))]

    Hyper-parameters:
        beta: 0.1 — lambda, weight of the odds-ratio term (the paper's lambda = 0.1; TRL calls it beta).
    """
    t = reference_free_terms(batch, "orpo")
    c, r = mean_logps(t, "orpo")
    pref = -beta * F.logsigmoid(log_odds(c) - log_odds(r))
    out = finish(t, pref, beta * c, beta * r, chosen_nll(t), 1.0)
    out.metrics["log_odds_ratio"] = (log_odds(c) - log_odds(r)).detach().mean().item()
    return out
