"""BCO's paired form: chosen and rejected as two binary-classification examples."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="bco_pair",
    verification="trl-parity",
    paper="Binary Classifier Optimization for Large Language Model Alignment",
    arxiv="2404.04656",
    f_divergence=False,
)
def bco_pair(t: PairTerms, *, beta: float = 0.1) -> Tensor:
    """Binary Classifier Optimization for Large Language Model Alignment (BCO, arXiv:2404.04656), paired form.

    A logistic classifier whose logit is the implicit reward separates chosen (label 1) from rejected (label 0);
    this paired version has no reward shift (the unpaired ``bco`` objective carries the running-mean shift).

    Formula:
        r_w = beta * (log pi(y_w) - log ref(y_w)),  r_l = beta * (log pi(y_l) - log ref(y_l))
        L = -log sigma(r_w) - log sigma(-r_l)

    Hyper-parameters:
        beta: 0.1 — reward temperature (TRL ``DPOConfig`` default).
    """
    return -F.logsigmoid(beta * t.chosen_logratios) - F.logsigmoid(-beta * t.rejected_logratios)
