"""SLiC / RSO hinge loss on the implicit reward margin."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="hinge",
    verification="trl-parity",
    aliases=("slic", "rso"),
    paper="Statistical Rejection Sampling Improves Preference Optimization",
    arxiv="2309.06657",
)
def hinge(t: PairTerms, *, beta: float = 0.1) -> Tensor:
    """Statistical Rejection Sampling Improves Preference Optimization (RSO, arXiv:2309.06657); the hinge loss of
    SLiC-HF (arXiv:2305.10425) written on normalised likelihoods.

    Formula:
        u = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))
        L = max(0, 1 - beta * u)

    Hyper-parameters:
        beta: 0.1 — 1/beta is the margin the log-ratio difference must exceed (RSO's gamma = beta; TRL's
            ``DPOConfig`` default).
    """
    return torch.relu(1 - beta * t.delta_score)
