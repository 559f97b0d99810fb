"""beta-ORPO and beta-ASFT: odds-ratio objectives with a unifying beta, for two-stage (SFT first) training."""

from __future__ import annotations

import torch.nn.functional as F

from alignkit.objectives._math import log_odds
from alignkit.objectives.reference_free._common import chosen_nll, finish, mean_logps, reference_free_terms
from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch

_PAPER = "The Differences Between Direct Alignment Algorithms are a Blur"


@register_objective(
    name="beta_orpo",
    verification="paper-formula",
    paper=_PAPER,
    arxiv="2502.01237",
    needs_reference=False,
    aggregation="mean",
    batch_type=PreferenceBatch,
    tags=(
        "paired",
        "reference-free",
        "algorithm:pairwise",
        "feedback:preference",
        "data:off-policy",
        "two-stage",
    ),
)
def beta_orpo(batch: PreferenceBatch, *, beta: float = 1.0, lambda_nll: float = 0.0) -> LossOutput:
    """The Differences Between Direct Alignment Algorithms are a Blur (arXiv:2502.01237): beta-ORPO.

    ORPO's pairwise odds-ratio term with a temperature beta inside the sigmoid, meant to run after an explicit
    SFT stage (so the NLL term defaults to off). beta = 1 with lambda_nll = 1 and the term weighted by lambda is
    ORPO. Reading of the paper: beta multiplies the log odds ratio inside log sigma (the paper's unified-beta
    form); check the paper's equations before relying on other placements.

    Formula:
        P(y) = exp(log pi(y|x)/|y|),  o(y) = log(P(y) / (1 - P(y)))
        L = -log sigma(beta (o(y_w) - o(y_l))) + lambda_nll * NLL_token_mean(y_w)

    Hyper-parameters:
        beta: 1.0 — preference strength (the paper: 1.0 recovers ORPO's odds-ratio term).
        lambda_nll: 0.0 — NLL weight (0 in the paper's two-stage recipe; the SFT stage is run separately).
    """
    t = reference_free_terms(batch, "beta_orpo")
    c, r = mean_logps(t, "beta_orpo")
    pref = -F.logsigmoid(beta * (log_odds(c) - log_odds(r)))
    return finish(
        t, pref, beta * log_odds(c), beta * log_odds(r), chosen_nll(t) if lambda_nll else None, lambda_nll
    )


@register_objective(
    name="beta_asft",
    verification="paper-formula",
    paper=_PAPER,
    arxiv="2502.01237",
    needs_reference=False,
    aggregation="mean",
    batch_type=PreferenceBatch,
    tags=(
        "paired",
        "reference-free",
        "algorithm:pairwise",
        "feedback:preference",
        "data:off-policy",
        "two-stage",
        "pointwise",
    ),
)
def beta_asft(batch: PreferenceBatch, *, beta: float = 1.0, lambda_nll: float = 0.0) -> LossOutput:
    """The Differences Between Direct Alignment Algorithms are a Blur (arXiv:2502.01237): beta-ASFT, the
    pointwise odds objective of ASFT (Aligned Supervised Fine-Tuning, arXiv:2409.10571) with a temperature beta.

    Each response is classified on its own (pointwise), not against its pair. Since sigma(o(y)) = P(y), at
    beta = 1 the loss is -log P(y_w) - log(1 - P(y_l)): likelihood plus unlikelihood on length-normalised
    probabilities.

    Formula:
        P(y) = exp(log pi(y|x)/|y|),  o(y) = log(P(y) / (1 - P(y)))
        L = -log sigma(beta o(y_w)) - log sigma(-beta o(y_l)) + lambda_nll * NLL_token_mean(y_w)

    Hyper-parameters:
        beta: 1.0 — preference strength (the paper: 1.0 is ASFT's alignment term).
        lambda_nll: 0.0 — NLL weight (0 in the paper's two-stage recipe).
    """
    t = reference_free_terms(batch, "beta_asft")
    c, r = mean_logps(t, "beta_asft")
    oc, orr = log_odds(c), log_odds(r)
    pref = -F.logsigmoid(beta * oc) - F.logsigmoid(-beta * orr)
    return finish(t, pref, beta * oc, beta * orr, chosen_nll(t) if lambda_nll else None, lambda_nll)
