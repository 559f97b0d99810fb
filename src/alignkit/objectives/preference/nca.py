"""NCA: noise-contrastive alignment (pairwise form)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="nca_pair",
    verification="trl-parity",
    aliases=("nca",),
    paper="Noise Contrastive Alignment of Language Models with Explicit Rewards",
    arxiv="2402.05369",
    f_divergence=False,
)
def nca_pair(t: PairTerms, *, beta: float = 0.01) -> Tensor:
    """Noise Contrastive Alignment of Language Models with Explicit Rewards (NCA, arXiv:2402.05369).

    Optimises absolute rather than relative likelihoods: the chosen response's implicit reward is pushed up in
    absolute terms, which prevents the chosen likelihood from falling as it can under DPO.

    Formula:
        r_w = beta * (log pi(y_w) - log ref(y_w)),  r_l = beta * (log pi(y_l) - log ref(y_l))
        L = -log sigma(r_w) - 0.5 log sigma(-r_w) - 0.5 log sigma(-r_l)

    Hyper-parameters:
        beta: 0.01 — reward temperature (the official training config's value, thu-ml/Noise-Contrastive-Alignment,
            as found by the review in issue #14). TRL's ``loss_type="nca_pair"`` uses ``DPOConfig.beta`` (0.1);
            the formula equals TRL's for any beta (tests/objectives/test_trl_parity.py passes beta explicitly).
    """
    r_w, r_l = beta * t.chosen_logratios, beta * t.rejected_logratios
    return -F.logsigmoid(r_w) - 0.5 * F.logsigmoid(-r_w) - 0.5 * F.logsigmoid(-r_l)
