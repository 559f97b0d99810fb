"""CPO: contrastive preference optimisation (reference-free DPO + NLL)."""

from __future__ import annotations

import torch.nn.functional as F

from alignkit.objectives.reference_free._common import chosen_nll, finish, reference_free_terms
from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch


@register_objective(
    name="cpo",
    verification="trl-parity",
    paper="Contrastive Preference Optimization: Pushing the Boundaries of LLM Performance in Machine Translation",
    arxiv="2401.08417",
    needs_reference=False,
    batch_type=PreferenceBatch,
    tags=("paired", "reference-free", "algorithm:pairwise", "feedback:preference", "data:off-policy"),
)
def cpo(
    batch: PreferenceBatch, *, beta: float = 0.1, label_smoothing: float = 0.0, cpo_alpha: float = 1.0
) -> LossOutput:
    """Contrastive Preference Optimization: Pushing the Boundaries of LLM Performance in Machine Translation
    (CPO, arXiv:2401.08417), Eq. 3: DPO with a uniform reference (dropped) plus an NLL term on the chosen.

    Formula:
        u = log pi(y_w|x) - log pi(y_l|x)
        L = mean_B[-(1 - eps) log sigma(beta u) - eps log sigma(-beta u)] + alpha * NLL_token_mean(y_w)

    Hyper-parameters:
        beta: 0.1 — temperature (TRL ``CPOConfig`` default).
        label_smoothing: 0.0 — eps (conservative labels; TRL ``CPOConfig`` default).
        cpo_alpha: 1.0 — weight of the NLL term (the paper's L_NLL has weight 1).
    """
    t = reference_free_terms(batch, "cpo")
    u = beta * (t.chosen_logps - t.rejected_logps)
    pref = -(1 - label_smoothing) * F.logsigmoid(u) - label_smoothing * F.logsigmoid(-u)
    nll = chosen_nll(t) if cpo_alpha else None
    return finish(t, pref, beta * t.chosen_logps, beta * t.rejected_logps, nll, cpo_alpha)
