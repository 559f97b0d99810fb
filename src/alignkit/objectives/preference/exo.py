"""EXO: efficient exact optimisation of the alignment objective (pairwise form)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="exo_pair",
    aliases=("exo",),
    paper="Towards Efficient Exact Optimization of Language Model Alignment",
    arxiv="2402.00856",
)
def exo_pair(t: PairTerms, *, beta: float = 0.1, label_smoothing: float = 1e-3) -> Tensor:
    """Towards Efficient Exact Optimization of Language Model Alignment (EXO, arXiv:2402.00856), EXO-pref (Eq. 16).

    Minimises the reverse KL between the model's distribution over {y_w, y_l}, softmax of beta x log-ratio, and
    the label distribution [1 - eps, eps] — mode-seeking where DPO is mean-seeking.

    Formula:
        u = beta * ((log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)))
        L = sigma(u) (log sigma(u) - log(1 - eps)) + sigma(-u) (log sigma(-u) - log eps)

    Hyper-parameters:
        beta: 0.1 — beta_pi, the model temperature.
        label_smoothing: 1e-3 — eps > 0 (the paper's recommendation; eps = 0 makes the loss infinite).
    """
    if not 0.0 < label_smoothing < 1.0:
        raise ValueError(
            f"exo_pair needs 0 < label_smoothing < 1 (the paper uses 1e-3); got {label_smoothing}"
        )
    u = beta * t.delta_score
    return torch.sigmoid(u) * (F.logsigmoid(u) - math.log1p(-label_smoothing)) + torch.sigmoid(-u) * (
        F.logsigmoid(-u) - math.log(label_smoothing)
    )
