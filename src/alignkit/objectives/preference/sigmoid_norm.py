"""Length-normalised DPO (the sigmoid loss on per-token log-ratios)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="sigmoid_norm",
    verification="trl-parity",
    aliases=("ln_dpo", "dpo_norm"),
    paper="Disentangling Length from Quality in Direct Preference Optimization",
    arxiv="2403.19159",
    aggregation="mean",
)
def sigmoid_norm(t: PairTerms, *, beta: float = 0.1) -> Tensor:
    """Length-normalised DPO as TRL's ``sigmoid_norm`` (the length-controlled view of Disentangling Length from
    Quality in Direct Preference Optimization, arXiv:2403.19159): DPO on per-token-averaged log-ratios, so a
    longer answer earns no larger implicit reward.

    Formula:
        h = (log pi(y_w) - log ref(y_w)) / |y_w| - (log pi(y_l) - log ref(y_l)) / |y_l|
        L = -log sigma(beta * h)

    Hyper-parameters:
        beta: 0.1 — KL strength per token (TRL ``DPOConfig`` default).
    """
    t.batch.require_lengths("sigmoid_norm")
    h = t.chosen_scores / t.chosen_lengths.clamp(min=1.0) - t.rejected_scores / t.rejected_lengths.clamp(
        min=1.0
    )
    return -F.logsigmoid(beta * h)
