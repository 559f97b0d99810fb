"""iREPO: regression of the implicit-reward difference onto the logit of an empirical (soft) preference."""

from __future__ import annotations

import math

import torch

from alignkit.batches_extra import extra
from alignkit.objectives.preference._pairwise import pair_terms, preference_metrics
from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch

PAPER = "iREPO: implicit Reward Pairwise Difference based Empirical Preference Optimization"


@register_objective(
    name="irepo",
    verification="reconstruction",
    paper=PAPER,
    arxiv="2405.15230",
    family="preference",
    needs_reference=True,
    aggregation="sum",
    batch_type=PreferenceBatch,
    optional={
        "preference_probs": "no preference_prob column: every pair is a hard preference (p = 1 - eps), "
        "iREPO's limiting case"
    },
    tags=(
        "paired",
        "reference",
        "soft-labels",
        "algorithm:pairwise",
        "feedback:soft-preference",
        "data:on-policy",
    ),
)
def irepo(batch: PreferenceBatch, *, beta: float = 0.1, eps: float = 1e-3) -> LossOutput:
    """iREPO: implicit Reward Pairwise Difference based Empirical Preference Optimization (arXiv:2405.15230).

    The implicit-reward difference of two self-generated responses is regressed onto the logit of the empirical
    probability that the first is preferred (the fraction of human votes, or an AI annotator's probability). At
    the optimum the Bradley-Terry probability sigma(beta * h) equals that empirical preference.

    Formula:
        h = (log pi(y_1|x) - log ref(y_1|x)) - (log pi(y_2|x) - log ref(y_2|x))
        p^ = clip(P^(y_1 > y_2), eps, 1 - eps)
        L = mean_B (beta * h - log(p^ / (1 - p^)))^2

    Hyper-parameters:
        beta: 0.1 — scale of the implicit reward (not verified against the paper; DPO's usual value).
        eps: 1e-3 — clipping of p^ so hard labels (p^ = 1) give a finite target (this library's choice).

    Inputs: a :class:`alignkit.batches_extra.SoftPreferenceBatch` carries ``preference_probs``; a plain
    ``PreferenceBatch`` means hard labels, p^ = 1, and the loss becomes an IPO-style regression onto the fixed
    target logit(1 - eps): L = beta^2 (h - logit(1 - eps) / beta)^2. Source: arXiv 2405.15230 v1 abstract and a
    review of the paper ("regression-based loss ... on the logit of the empirical preferences"); the exact scale
    of the squared error (a 1/2 factor, beta on the target instead of on h) was not verified.

    Guessed after re-checking: the loss scale: a second search (issue #14) found only the abstract and
    reviews, no code; still guessed.
    """
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5); got {eps}")
    t = pair_terms(batch, why="objective 'irepo'")
    h = t.chosen_logratios - t.rejected_logratios
    probs = extra(batch, "preference_probs")
    if probs is None:
        target = torch.full_like(h, math.log((1 - eps) / eps))
    else:
        p = probs.to(h.dtype).clamp(eps, 1 - eps)
        target = torch.log(p) - torch.log1p(-p)
    losses = (beta * h - target) ** 2
    metrics = preference_metrics(beta * t.chosen_logratios, beta * t.rejected_logratios, t)
    metrics["irepo/target_logit"] = target.mean().item()
    return LossOutput(loss=losses.mean(), losses=losses, metrics=metrics)
