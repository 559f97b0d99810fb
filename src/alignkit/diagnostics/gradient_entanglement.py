"""Gradient entanglement of margin-based preference losses: when the chosen and rejected log-prob gradients are
too aligned, one step of a margin loss lowers (or raises) both likelihoods together."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from alignkit.registry import register

PAPER = "A Common Pitfall of Margin-based Language Model Alignment: Gradient Entanglement"


def log_prob_gradients(
    logp_fn: Callable[[], tuple[Tensor, Tensor]], params: Sequence[Tensor]
) -> tuple[Tensor, Tensor]:
    """Flattened gradients (g_w, g_l) of log pi(y_w) and log pi(y_l) w.r.t. ``params``; ``logp_fn()`` returns
    the two scalar log-probs of one pair."""
    lw, ll = logp_fn()
    gw = torch.autograd.grad(lw, params, retain_graph=True, allow_unused=True)
    gl = torch.autograd.grad(ll, params, allow_unused=True)

    def flat(gs: Sequence[Tensor | None]) -> Tensor:
        return torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(gs, params, strict=True)
            ]
        )

    return flat(gw), flat(gl)


@register(
    name="gradient_entanglement",
    verification="reconstruction",
    kind="diagnostic",
    family="preference",
    paper=PAPER,
    arxiv="2410.13828",
    tags=("paired", "algorithm:pairwise", "feedback:preference"),
)
def gradient_entanglement(
    grad_chosen: Tensor, grad_rejected: Tensor, *, chosen_weight: float = 1.0, rejected_weight: float = 1.0
) -> dict[str, Tensor]:
    """A Common Pitfall of Margin-based Language Model Alignment: Gradient Entanglement (arXiv:2410.13828).

    A margin loss l(log pi(y_w) - log pi(y_l)) moves parameters along a g_w - b g_l; the chosen and rejected
    log-probs then change by the projections of that step on their own gradients. When <g_w, g_l> is large
    relative to the norms, both likelihoods move the same way: the chosen one can fall (the "likelihood
    displacement" seen with DPO) or the rejected one can rise.

    Formula:
        step: d theta = eta (a g_w - b g_l)   (a, b > 0: |dl/d log pi(y_w)|, |dl/d log pi(y_l)|; a = b for DPO)
        d log pi(y_w) ~ eta (a ||g_w||^2 - b <g_w, g_l>)
        d log pi(y_l) ~ eta (a <g_w, g_l> - b ||g_l||^2)
        chosen falls    iff <g_w, g_l> > (a/b) ||g_w||^2
        rejected rises  iff <g_w, g_l> > (b/a) ||g_l||^2
        both fall       iff (a/b) ||g_w||^2 < <g_w, g_l> < (b/a) ||g_l||^2

    Hyper-parameters:
        chosen_weight: 1.0 — a (ours: 1 for DPO-like losses, whose chosen and rejected terms weigh the same).
        rejected_weight: 1.0 — b (ours, as ``chosen_weight``).

    ``grad_chosen``/``grad_rejected``: (P,) or (B, P) gradients of the log-probs (see
    :func:`log_prob_gradients`). Returns per pair: ``inner``, ``norm_sq_chosen``, ``norm_sq_rejected``,
    ``cosine``, ``delta_chosen`` / ``delta_rejected`` (first-order changes per unit step size), and bool flags
    ``chosen_falls``, ``rejected_rises``, ``both_fall``, ``both_rise``. Source: the paper's abstract (the
    condition "inner product large relative to the individual norms"); the per-step formulas are the first-order
    derivation above (the paper's general statement for unequal weights was not read).
    """
    if grad_chosen.shape != grad_rejected.shape:
        raise ValueError(
            f"grad_chosen has shape {tuple(grad_chosen.shape)} but grad_rejected has {tuple(grad_rejected.shape)}"
        )
    if chosen_weight <= 0 or rejected_weight <= 0:
        raise ValueError("chosen_weight and rejected_weight must be positive")
    a, b = chosen_weight, rejected_weight
    inner = (grad_chosen * grad_rejected).sum(-1)
    nw = (grad_chosen * grad_chosen).sum(-1)
    nl = (grad_rejected * grad_rejected).sum(-1)
    dw = a * nw - b * inner
    dl = a * inner - b * nl
    return {
        "inner": inner,
        "norm_sq_chosen": nw,
        "norm_sq_rejected": nl,
        "cosine": inner / (nw.sqrt() * nl.sqrt()).clamp_min(torch.finfo(inner.dtype).tiny),
        "delta_chosen": dw,
        "delta_rejected": dl,
        "chosen_falls": dw < 0,
        "rejected_rises": dl > 0,
        "both_fall": (dw < 0) & (dl < 0),
        "both_rise": (dw > 0) & (dl > 0),
    }
