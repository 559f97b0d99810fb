"""Catastrophic overtraining: fine-tuning degradation against the pre-training budget; parameter sensitivity."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from alignkit.registry import register


@torch.no_grad()
def perturbation_sensitivity(
    model: nn.Module,
    loss_fn: Callable[[nn.Module], float],
    *,
    sigma: float,
    n_samples: int = 8,
    relative: bool = False,
    seed: int = 0,
) -> float:
    """``E_eps[L(theta + sigma eps) - L(theta)]``, eps ~ N(0, I) (times |theta| per entry with ``relative``);
    the model's weights are restored exactly."""
    if sigma < 0 or n_samples <= 0:
        raise ValueError(f"sigma must be >= 0 and n_samples > 0, got {sigma}, {n_samples}")
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    base = float(loss_fn(model))
    g = torch.Generator(device="cpu").manual_seed(seed)
    total = 0.0
    try:
        for _ in range(n_samples):
            for p, s in zip(params, saved, strict=True):
                eps = torch.randn(p.shape, generator=g).to(p)
                p.copy_(s + sigma * eps * (s.abs() if relative else 1.0))
            total += float(loss_fn(model)) - base
    finally:
        for p, s in zip(params, saved, strict=True):
            p.copy_(s)
    return total / n_samples


def finetuning_degradation(
    before: Mapping[int, float], after: Mapping[int, float], *, higher_is_better: bool = True
) -> dict[str, object]:
    """Overtrained Language Models Are Harder to Fine-Tune (Springer et al., 2025; arXiv:2503.19206) —
    post-fine-tuning performance against the pre-training budget, and the inflection point.

    Formula:
        for each pre-training budget T (tokens or steps): degradation(T) = score_before(T) - score_after(T)
        (sign flipped for losses); best_budget = argmax_T score_after(T); overtrained = budgets > best_budget
        whose post-fine-tuning score is worse than at best_budget ("catastrophic overtraining")

    Hyper-parameters:
        before / after: ``{budget: score}`` of the base checkpoint and of it after the same fine-tuning (e.g.
            pre-training-data loss, or a downstream score).
        higher_is_better: score direction (default True; False for losses).
            Operational (alignkit's interface, not a paper hyper-parameter).

    Use ``perturbation_sensitivity`` for the paper's mechanism (sensitivity to Gaussian weight noise grows with
    the budget).

    Source: the abstract and summaries (via the catalog: OLMo-1B at 3T tokens is >2% worse after instruction
    tuning than at 2.3T; progressive sensitivity to modifications). Unverified: the paper's exact noise scaling
    (absolute vs relative) and whether sensitivity is measured on pre-training or downstream loss.
    """
    if set(before) != set(after):
        raise ValueError(f"before and after: budgets differ ({sorted(before)} vs {sorted(after)})")
    if not before:
        raise ValueError("before: needs at least one budget")
    sign = 1.0 if higher_is_better else -1.0
    budgets = sorted(before)
    deg = {t: sign * (before[t] - after[t]) for t in budgets}
    best = max(budgets, key=lambda t: sign * after[t])
    over = [t for t in budgets if t > best and sign * after[t] < sign * after[best]]
    return {"budgets": budgets, "degradation": deg, "best_budget": best, "overtrained_budgets": over}


register(
    name="finetuning_degradation",
    verification="reconstruction",
    kind="diagnostic",
    family="harmful_finetuning",
    paper="Overtrained Language Models Are Harder to Fine-Tune",
    arxiv="2503.19206",
    tags=("overtraining",),
    summary="post-fine-tuning score vs pre-training budget; inflection (best) budget; perturbation sensitivity",
)(finetuning_degradation)
