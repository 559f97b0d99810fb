"""DPO (sigmoid loss) and its conservative variant cDPO."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="dpo",
    verification="trl-parity",
    aliases=("sigmoid", "cdpo"),
    paper="Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
    arxiv="2305.18290",
)
def dpo(t: PairTerms, *, beta: float = 0.1, label_smoothing: float = 0.0) -> Tensor:
    """Direct Preference Optimization: Your Language Model is Secretly a Reward Model (arXiv:2305.18290).

    The Bradley–Terry likelihood of the preference under the implicit reward r(x, y) = beta log pi(y|x)/ref(y|x).
    With ``label_smoothing`` = eps > 0 it is cDPO (the original DPO code's conservative loss for labels flipped
    with probability eps).

    Formula:
        u = (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))
        L = -(1 - eps) * log sigma(beta * u) - eps * log sigma(-beta * u)

    Hyper-parameters:
        beta: 0.1 — KL strength (the paper uses 0.1; 0.5 for the sentiment task).
        label_smoothing: 0.0 — eps, assumed probability that a label is flipped (cDPO; TRL's default, 0 = DPO).

    Note: TRL 1.16's ``loss_type="sigmoid"`` ignores ``label_smoothing``; with eps = 0 the two agree exactly.
    """
    u = beta * t.delta_score
    return -(1 - label_smoothing) * F.logsigmoid(u) - label_smoothing * F.logsigmoid(-u)
