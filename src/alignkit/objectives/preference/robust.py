"""Robust DPO: an unbiased loss under preference-label noise."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="robust",
    verification="trl-parity",
    aliases=("rdpo", "robust_dpo"),
    paper="Provably Robust DPO: Aligning Language Models with Noisy Feedback",
    arxiv="2403.00409",
)
def robust(t: PairTerms, *, beta: float = 0.1, label_smoothing: float = 0.1) -> Tensor:
    """Provably Robust DPO: Aligning Language Models with Noisy Feedback (rDPO, arXiv:2403.00409).

    De-biases the DPO loss for labels flipped with known probability eps; its expectation under the noise equals
    the clean DPO loss.

    Formula:
        u = beta * ((log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)))
        L = ((1 - eps) (-log sigma(u)) - eps (-log sigma(-u))) / (1 - 2 eps)

    Hyper-parameters:
        beta: 0.1 — KL strength (TRL ``DPOConfig`` default).
        label_smoothing: 0.1 — eps in [0, 0.5), the flip rate (the paper's experiments use 0.1 to 0.4).
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"robust needs 0 <= label_smoothing < 0.5; got {label_smoothing}")
    u = beta * t.delta_score
    clean = -(1 - label_smoothing) * F.logsigmoid(u)
    flipped = -label_smoothing * F.logsigmoid(-u)
    return (clean - flipped) / (1 - 2 * label_smoothing)
