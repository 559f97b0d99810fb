"""RPO: DPO regularised by the SFT loss on the chosen response."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="rpo",
    verification="trl-parity",
    aliases=("regularized_preference_optimization",),
    paper="Provably Mitigating Overoptimization in RLHF: Your SFT Loss is Implicitly an Adversarial Regularizer",
    arxiv="2405.16436",
)
def rpo(t: PairTerms, *, beta: float = 0.01, eta: float = 0.005, nll: str = "sum") -> Tensor:
    """Provably Mitigating Overoptimization in RLHF: Your SFT Loss is Implicitly an Adversarial Regularizer
    (RPO, arXiv:2405.16436).

    The max-min objective (adversarial reward + reward penalty) reduces to DPO plus an SFT term on a baseline
    response, in practice the chosen one. The official code adds the *summed* chosen log-prob times eta*beta;
    Appendix F's variant adds eta times the per-token-mean NLL (TRL's ``["sigmoid", "sft"]`` mix with weight eta).

    Formula:
        u = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))
        nll="sum":  L = -log sigma(beta u) - eta * beta * log pi(y_w|x)
        nll="mean": L = -log sigma(beta u) - eta * log pi(y_w|x) / |y_w|

    Hyper-parameters:
        beta: 0.01 — DPO's beta (the official zephyr-7b recipe).
        eta: 0.005 — weight of the SFT regulariser (official recipe).
        nll: "sum" — "sum" (main paper, official code) or "mean" (Appendix F).
    """
    dpo_term = -F.logsigmoid(beta * t.delta_score)
    if nll == "sum":
        return dpo_term - eta * beta * t.chosen_logps
    if nll == "mean":
        t.batch.require_lengths("rpo with nll='mean'")
        return dpo_term - eta * t.chosen_logps / t.chosen_lengths
    raise ValueError(f"rpo's nll must be 'sum' or 'mean'; got {nll!r}")
