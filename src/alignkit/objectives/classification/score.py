"""SCORE: adversarial training with the squared error on probabilities (self-consistent robust error)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.classification._batch import ClassificationBatch
from alignkit.registry import register_objective
from alignkit.types import LossOutput

PAPER = "Robustness and Accuracy Could Be Reconcilable by (Proper) Definition"


def smoothed_one_hot(targets: Tensor, num_classes: int, label_smoothing: float) -> Tensor:
    """SCORE's target: (1 - ls*K/(K-1)) * onehot + ls/(K-1); the true class gets 1 - ls, the others ls/(K-1)."""
    k = num_classes
    return (1 - label_smoothing * k / (k - 1)) * F.one_hot(targets, k).float() + label_smoothing / (k - 1)


@register_objective(
    name="score_se",
    aliases=("score",),
    paper=PAPER,
    arxiv="2202.10103",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_logits", "class_targets"),
    optional={"class_views": "no adversarial view: the robust term is 0 (the eps = 0 limit)"},
    tags=("modality:vision", "classification", "adversarial-robustness"),
    verification="official-code-parity",
)
def score_se(batch: ClassificationBatch, *, beta: float = 1.0, label_smoothing: float = 0.1) -> LossOutput:
    """Robustness and Accuracy Could Be Reconcilable by (Proper) Definition (SCORE; Pang, Lin, Yang, Zhu, Yan;
    arXiv:2202.10103).

    TRADES-style adversarial training where both the natural and the robust term are squared errors between
    probability vectors (local equivariance) instead of CE / KL. The adversarial input x' is found by PGD on
    the same squared error (:func:`se_pgd_attack`) and its logits are ``views[0]``. Follows the authors'
    ``core/utils/trades.py::trades_loss_LSE``.

    Formula:
        y~ = (1 - ls*K/(K-1)) onehot(y) + ls/(K-1)
        L = mean_i ||softmax(h(x_i)) - y~_i||_2^2 + beta * mean_i ||softmax(h(x'_i)) - softmax(h(x_i))||_2^2
        x' = argmax_{||x' - x||_inf <= eps} ||softmax(h(x')) - softmax(h(x))||^2   (PGD, the caller's)

    Hyper-parameters:
        beta: 1.0 — the official ``trades_loss_LSE(beta=1.0)`` default (the training scripts pass --beta).
        label_smoothing: 0.1 — the official ``trades_loss_LSE(label_smoothing=0.1)``.
    """
    logits = batch.need("logits")
    k = logits.shape[1]
    p = torch.softmax(logits, -1)
    natural = (p - smoothed_one_hot(batch.class_ids(), k, label_smoothing).to(p.dtype)).pow(2).sum(-1)
    robust = torch.zeros_like(natural)
    if batch.views:
        robust = (torch.softmax(batch.views[0], -1) - p).pow(2).sum(-1)
    losses = natural + beta * robust
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={"natural": float(natural.detach().mean()), "robust": float(robust.detach().mean())},
    )


def se_pgd_attack(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    generator: torch.Generator,
    lower: float = 0.0,
    upper: float = 1.0,
) -> Tensor:
    """L_inf PGD maximising ||softmax(model(x')) - softmax(model(x))||^2 from a uniform start in the eps-ball, as
    the official ``trades_loss_LSE`` (sign steps, projection onto the ball and the [lower, upper] box)."""
    with torch.no_grad():
        p_nat = torch.softmax(model(x), -1)
    noise = (torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1) * eps
    x_adv = (x.detach() + noise).clamp(lower, upper)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = (torch.softmax(model(x_adv), -1) - p_nat).pow(2).sum()
        (grad,) = torch.autograd.grad(loss, [x_adv])
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(lower, upper)
    return x_adv.detach()
