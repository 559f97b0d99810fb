"""DiscoPOP: the LLM-discovered log-ratio-modulated loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="discopop",
    verification="trl-parity",
    paper="Discovering Preference Optimization Algorithms with and for Large Language Models",
    arxiv="2406.08414",
)
def discopop(t: PairTerms, *, beta: float = 0.05, discopop_tau: float = 0.05) -> Tensor:
    """Discovering Preference Optimization Algorithms with and for Large Language Models (DiscoPOP,
    arXiv:2406.08414), Eq. 5: a blend of the logistic (DPO) and exponential losses, mixed by a sigmoid of the
    scaled margin.

    Formula:
        z = beta * ((log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)))
        m = sigma(z / tau)
        L = (1 - m) (-log sigma(z)) + m exp(-z)

    Hyper-parameters:
        beta: 0.05 — the paper's beta.
        discopop_tau: 0.05 — tau, temperature of the mixing sigmoid (TRL ``DPOConfig`` default, the paper's).
    """
    z = beta * t.delta_score
    m = torch.sigmoid(z / discopop_tau)
    return -F.logsigmoid(z) * (1 - m) + torch.exp(-z) * m
