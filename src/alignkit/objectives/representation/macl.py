"""MACL: model-aware contrastive learning — InfoNCE with a temperature that follows the alignment magnitude."""

from __future__ import annotations

import torch.nn.functional as F

from alignkit.objectives.representation._batches import PairBatch, check_positive, example
from alignkit.registry import register_objective
from alignkit.types import LossOutput

SCHEDULES = ("linear", "power")


@register_objective(
    name="macl",
    aliases=("model_aware_contrastive",),
    paper="Model-Aware Contrastive Learning: Towards Escaping the Dilemmas",
    arxiv="2207.07874",
    family="representation",
    needs_reference=False,
    batch_type=PairBatch,
    requires=("paired_embeddings",),
    tags=("contrastive", "in-batch-negatives", "modality:image", "modality:text"),
    verification="official-code-parity",
    ranges={"beta": "[0, inf)"},  # beta = 0: no model-aware adaptation (re-weighted InfoNCE)
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation import PairBatch
batch = PairBatch(a=torch.randn(8, 16, requires_grad=True), b=torch.randn(8, 16))
out = ak.get("macl")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def macl(
    batch: PairBatch,
    *,
    tau_init: float = 0.1,
    schedule: str = "linear",
    beta: float = 1.0,
    alpha: float = 2.0,
) -> LossOutput:
    """Model-Aware Contrastive Learning: Towards Escaping the Dilemmas (MACL, arXiv:2207.07874).

    The temperature grows with the alignment magnitude A of the positive pairs (the model's current
    state), and each anchor's loss is re-weighted by 1 / (1 - P_ii) so that easy positives do not vanish
    from the gradient.

    Formula:
        x_i = a_i / ||a_i||, y_j = b_j / ||b_j||,  s_ij = <x_i, y_j>,  A = sg(mean_i s_ii)
        tau = tau_init * (1 + beta * A)          (schedule="linear", the official MACLb)
        tau = tau_init * alpha^A                 (schedule="power", the official MACLa)
        P_ij = softmax_j(s_ij / tau),  W_i = sg(1 / sum_{j != i} P_ij) = sg(1 / (1 - P_ii))
        L = -mean_i W_i log P_ii

    Hyper-parameters:
        tau_init: 0.1 — official code (chenhaoxing/MACL ``macl.py``: ``tau_init=0.1``).
        schedule: "linear" — which temperature schedule; both are in the official code.
        beta: 1.0 — slope of the linear schedule (official ``MACLb(beta=1.0)``).
        alpha: 2.0 — base of the power schedule (official ``MACLa(alpha=2.0)``).

    One direction (a -> b), as the official code; sg = stop-gradient. Equal to the official ``MACLa`` /
    ``MACLb`` (restated in the test) on normalised inputs.
    """
    check_positive("tau_init", tau_init)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    x, y = F.normalize(batch.a, dim=-1), F.normalize(batch.b, dim=-1)
    logits = x @ y.T
    a_mag = logits.diagonal().mean().detach()
    tau = tau_init * (1 + beta * a_mag) if schedule == "linear" else tau_init * alpha**a_mag
    log_p = F.log_softmax(logits / tau, dim=1)
    p_pos = log_p.diagonal().exp()
    w = 1.0 / (1.0 - p_pos).detach()
    losses = -w * log_p.diagonal()
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={
            "macl/tau": float(tau.detach()),
            "macl/alignment": float(a_mag.detach()),
            "macl/pos_prob": p_pos.mean().item(),
        },
    )
