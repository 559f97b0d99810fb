"""EXO: efficient exact optimisation of the alignment objective (pairwise form)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="exo_pair",
    verification="trl-parity",
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
        beta: 0.1 — beta_pi, the model temperature (TRL's ``DPOConfig.beta`` default; ``exo_pair`` is a TRL
            ``loss_type`` and keeps TRL's numbers — tests/objectives/test_trl_parity.py).
        label_smoothing: 1e-3 — eps > 0 (TRL's recommendation for ``exo_pair``; eps = 0 makes the loss
            infinite).

    The authors' settings differ (official code haozheji/exact-optimization, ``src/align_stage/loss.py``
    ``exact_loss`` with ``loss_type`` "exo-pref", ``exp/hh_exp/train_exo.sh``, read):
        * beta_pi = 0.5 (``--beta_pi 0.5`` for HH-RLHF, TL;DR and the custom runs; 0.1 for IMDB);
        * the label log-probs are [0, -10] (``log_epsilon = -10``, unnormalised): the same loss as eps =
          e^-10 ~ 4.54e-5 up to the term sigma(u) * log(1 - eps) ~ -4.5e-5 * sigma(u);
        * policy and reference logits are divided by ``--temp 0.8`` before the log-softmax (HH-RLHF), i.e.
          the log-probs themselves are computed at temperature 0.8 — an engine setting, not this function's.
        To get them: ``ak.get("exo_pair")(batch, beta=0.5, label_smoothing=math.exp(-10))`` on log-probs
        computed from logits / 0.8 (``--hp beta=0.5 --hp label_smoothing=4.54e-5`` on the CLI; alignkit's
        engine scores at temperature 1).
    """
    if not 0.0 < label_smoothing < 1.0:
        raise ValueError(
            f"exo_pair needs 0 < label_smoothing < 1 (the paper uses 1e-3); got {label_smoothing}"
        )
    u = beta * t.delta_score
    return torch.sigmoid(u) * (F.logsigmoid(u) - math.log1p(-label_smoothing)) + torch.sigmoid(-u) * (
        F.logsigmoid(-u) - math.log(label_smoothing)
    )
