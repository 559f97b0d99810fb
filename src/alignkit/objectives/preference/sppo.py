"""SPPO with hard (0/1) win probabilities."""

from __future__ import annotations

from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="sppo_hard",
    aliases=("sppo",),
    paper="Self-Play Preference Optimization for Language Model Alignment",
    arxiv="2405.00675",
    f_divergence=False,
)
def sppo_hard(t: PairTerms, *, beta: float = 0.1) -> Tensor:
    """Self-Play Preference Optimization for Language Model Alignment (SPPO, arXiv:2405.00675), hard-label form.

    Eq. 4.7 with the estimated win probability P set to 1 for the winner and 0 for the loser: each log-ratio is
    regressed onto eta (P - 1/2) with eta = 1/beta.

    Formula:
        L = (log pi(y_w)/ref(y_w) - 1/(2 beta))^2 + (log pi(y_l)/ref(y_l) + 1/(2 beta))^2

    Hyper-parameters:
        beta: 0.1 — 1/eta (SPPO's eta is the step size of the multiplicative-weights update).
    """
    return (t.chosen_logratios - 0.5 / beta) ** 2 + (t.rejected_logratios + 0.5 / beta) ** 2
