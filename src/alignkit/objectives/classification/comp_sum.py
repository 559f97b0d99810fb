"""Comp-sum losses: the family Phi^tau(sum_{y' != y} e^{h_y' - h_y}) with its logistic (CE), sum-exponential,
generalised cross-entropy and mean-absolute-error members, and their smooth adversarial variant."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives.classification._batch import ClassificationBatch
from alignkit.registry import register_objective
from alignkit.types import LossOutput

PAPER = "Cross-Entropy Loss Functions: Theoretical Analysis and Applications"
TAGS = ("modality:tabular", "modality:vision", "classification", "h-consistency")


def comp_sum_terms(logits: Tensor, targets: Tensor, tau: float) -> Tensor:
    """Per-example comp-sum loss (B,).

    With ``1 + u = 1 / p_y`` (``u = sum_{y' != y} e^{h_y' - h_y}``, ``p = softmax(h)``):
    ``Phi^tau(u) = ((1 + u)^{1 - tau} - 1) / (1 - tau) = -expm1((tau - 1) log p_y) / (tau - 1)``, and
    ``-log p_y`` at ``tau = 1``. Computed from ``log p_y`` (log-softmax), so it is stable for large logits.
    """
    if tau < 0:
        raise ValueError(f"tau must be >= 0; got {tau}")
    logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    if tau == 1.0:
        return -logp
    return -torch.expm1((tau - 1.0) * logp) / (tau - 1.0)


def _output(losses: Tensor, extra: dict[str, float] | None = None) -> LossOutput:
    return LossOutput(
        loss=losses.mean(), losses=losses, metrics={"loss": float(losses.detach().mean()), **(extra or {})}
    )


@register_objective(
    name="comp_sum",
    paper=PAPER,
    arxiv="2304.07288",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_logits", "class_targets"),
    requires_when={"beta": ("class_views",)},
    ranges={"beta": "[0, inf)"},  # beta = 0: no adversarial term (the plain comp-sum loss)
    tags=TAGS,
    verification="paper-formula",
)
def comp_sum(batch: ClassificationBatch, *, tau: float = 1.0, beta: float = 0.0) -> LossOutput:
    """Cross-Entropy Loss Functions: Theoretical Analysis and Applications (Mao, Mohri, Zhong; arXiv:2304.07288).

    The comp-sum family composes a function Phi^tau with the sum of exponentiated logit gaps; the paper proves
    H-consistency bounds for every member. tau = 0: sum-exponential; tau = 1: logistic (cross-entropy);
    tau in (1, 2): generalised cross-entropy with q = tau - 1; tau = 2: mean absolute error. With ``beta > 0`` it
    is the paper's smooth adversarial comp-sum loss, reading the adversarial view's logits from ``views[0]``.

    Formula:
        u = sum_{y' != y} exp(h_y' - h_y) = 1 / p_y - 1
        Phi^tau(u) = log(1 + u)                         if tau = 1
                   = ((1 + u)^(1 - tau) - 1) / (1 - tau)  otherwise
        => tau=0: 1/p_y - 1;  tau=1: -log p_y;  tau in (1,2): (1 - p_y^(tau-1)) / (tau - 1);  tau=2: 1 - p_y
        smooth adversarial (beta > 0): L = Phi^tau(u(h(x))) + beta * ||h(x') - h(x)||_2,  x' = views[0]'s input

    Hyper-parameters:
        tau: 1.0 — the logistic loss (the paper's §3 family index; 1 is the cross-entropy member).
        beta: 0.0 — the adversarial regulariser's weight; 0 is the plain comp-sum loss (paper §5 adds it for
            adversarial robustness; the attack producing x' is the caller's, e.g. PGD).

    Inputs: ``logits`` (B, C), integer ``targets`` (B,); ``views[0]`` (B, C) when beta > 0.
    """
    logits = batch.need("logits")
    losses = comp_sum_terms(logits, batch.class_ids(), tau)
    extra: dict[str, float] = {}
    if beta:
        adv = batch.need("views")[0]
        reg = (adv - logits).norm(dim=-1)
        losses = losses + beta * reg
        extra["adversarial_gap"] = float(reg.mean().detach())
    return _output(losses, extra)


@register_objective(
    name="sum_exponential_loss",
    paper=PAPER,
    arxiv="2304.07288",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_logits", "class_targets"),
    tags=TAGS,
    verification="paper-formula",
)
def sum_exponential_loss(batch: ClassificationBatch) -> LossOutput:
    """The sum-exponential member (tau = 0) of the comp-sum family, from Cross-Entropy Loss Functions:
    Theoretical Analysis and Applications (Mao, Mohri, Zhong; arXiv:2304.07288).

    Formula:
        L = sum_{y' != y} exp(h_y' - h_y) = 1 / p_y - 1

    Hyper-parameters:
        none (tau = 0 fixed; the paper's §3).
    """
    return _output(comp_sum_terms(batch.need("logits"), batch.class_ids(), 0.0))


@register_objective(
    name="generalized_cross_entropy",
    aliases=("gce",),
    paper=PAPER,
    arxiv="2304.07288",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_logits", "class_targets"),
    tags=(*TAGS, "noisy-labels"),
    verification="paper-formula",
)
def generalized_cross_entropy(batch: ClassificationBatch, *, q: float = 0.7) -> LossOutput:
    """Generalised cross-entropy, the tau = 1 + q member of the comp-sum family, from Cross-Entropy Loss Functions:
    Theoretical Analysis and Applications (Mao, Mohri, Zhong; arXiv:2304.07288; GCE from Zhang & Sabuncu 2018).

    Formula:
        L = (1 - p_y^q) / q          (q -> 0: cross-entropy; q = 1: mean absolute error 1 - p_y)

    Hyper-parameters:
        q: 0.7 — Zhang & Sabuncu's (arXiv:1805.07836) default; tau = 1 + q in the comp-sum family.
    """
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1]; got {q}")
    return _output(comp_sum_terms(batch.need("logits"), batch.class_ids(), 1.0 + q))


@register_objective(
    name="mae_loss",
    paper=PAPER,
    arxiv="2304.07288",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_logits", "class_targets"),
    tags=(*TAGS, "noisy-labels"),
    verification="paper-formula",
)
def mae_loss(batch: ClassificationBatch) -> LossOutput:
    """Mean absolute error on probabilities, the tau = 2 member of the comp-sum family, from Cross-Entropy Loss
    Functions: Theoretical Analysis and Applications (Mao, Mohri, Zhong; arXiv:2304.07288).

    Formula:
        L = 1 - p_y        (= ||softmax(h) - onehot(y)||_1 / 2)

    Hyper-parameters:
        none (tau = 2 fixed; the paper's §3).
    """
    return _output(comp_sum_terms(batch.need("logits"), batch.class_ids(), 2.0))
