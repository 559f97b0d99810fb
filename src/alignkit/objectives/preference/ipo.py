"""IPO: the squared loss towards a fixed margin (Psi = identity)."""

from __future__ import annotations

from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="ipo",
    verification="trl-parity",
    paper="A General Theoretical Paradigm to Understand Learning from Human Preferences",
    arxiv="2310.12036",
    aggregation="mean",
)
def ipo(t: PairTerms, *, beta: float = 0.1) -> Tensor:
    """A General Theoretical Paradigm to Understand Learning from Human Preferences (IPO, arXiv:2310.12036).

    Regresses the log-likelihood-ratio margin onto 1/(2 tau) (Eq. 17), so it cannot drive the margin to infinity
    on deterministic preferences as DPO does. Log-ratios are averaged per token (as the IPO authors and TRL do).

    Formula:
        h = (log pi(y_w) - log ref(y_w)) / |y_w| - (log pi(y_l) - log ref(y_l)) / |y_l|
        L = (h - 1 / (2 * tau))^2

    Hyper-parameters:
        beta: 0.1 — tau, the regularisation strength; the target margin is 1/(2 tau) (TRL ``DPOConfig`` default).
    """
    t.batch.require_lengths("ipo")
    h = t.chosen_scores / t.chosen_lengths.clamp(min=1.0) - t.rejected_scores / t.rejected_lengths.clamp(
        min=1.0
    )
    return (h - 1 / (2 * beta)) ** 2
