"""Loss deceleration and zero-sum learning (Mircea et al., arXiv:2506.05447): the loss curve bends to a
shallower power law early in training, and after the bend per-example improvements are increasingly cancelled by
per-example degradations (destructive interference of per-example gradients)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from alignkit.registry import register

PAPER = "Training Dynamics Underlying Language Model Scaling Laws: Loss Deceleration and Zero-Sum Learning"


@register(
    name="zero_sum_learning",
    kind="diagnostic",
    family="training_dynamics",
    paper=PAPER,
    arxiv="2506.05447",
    aliases=("zero_sum_ratio", "zsl"),
    tags=("modality:any", "loss-deceleration", "gradient-conflict"),
    verification="reconstruction",
)
def zero_sum_ratio(loss_before: Tensor, loss_after: Tensor) -> dict[str, float]:
    """Training Dynamics Underlying Language Model Scaling Laws: Loss Deceleration and Zero-Sum Learning
    (arXiv:2506.05447).

    Zero-sum learning: the per-example (per-token) loss changes over a step or window largely cancel — some
    examples improve while others get worse — so the mean loss barely moves although individual losses do.

    Formula:
        d_i = l_i(after) - l_i(before)
        zero_sum_ratio D = 1 - |sum_i d_i| / sum_i |d_i|     (0: all move the same way; 1: they cancel exactly)
        improved_fraction = #{d_i < 0} / n

    Hyper-parameters:
        (none) — the normalisation is our reading of the paper's "destructive interference" measure (its exact
        definition was not readable here): verification "reconstruction".

    Returns ``zero_sum_ratio``, ``improved_fraction``, ``mean_change``, ``mean_abs_change``.
    """
    a = torch.as_tensor(loss_before, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(loss_after, dtype=torch.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"loss_before has {a.numel()} entries but loss_after has {b.numel()}")
    d = b - a
    tot = float(d.abs().sum())
    return {
        "zero_sum_ratio": 1.0 - abs(float(d.sum())) / tot if tot > 0 else 0.0,
        "improved_fraction": float((d < 0).double().mean()),
        "mean_change": float(d.mean()),
        "mean_abs_change": float(d.abs().mean()),
    }


def gradient_conflict(per_example_grads: Tensor) -> dict[str, float]:
    """Destructive interference of per-example gradients ``(n, P)``: ``1 - ||sum_i g_i|| / sum_i ||g_i||`` (0
    when all point the same way), the mean pairwise cosine and the fraction of pairs with negative cosine."""
    g = torch.as_tensor(per_example_grads, dtype=torch.float64)
    if g.dim() != 2 or g.shape[0] < 2:
        raise ValueError(f"per_example_grads must be (n >= 2, P); got {tuple(g.shape)}")
    norms = g.norm(dim=1)
    interference = 1.0 - float(g.sum(0).norm()) / float(norms.sum().clamp_min(1e-300))
    u = g / norms.clamp_min(1e-300)[:, None]
    cos = u @ u.T
    iu = torch.triu_indices(g.shape[0], g.shape[0], 1)
    pairs = cos[iu[0], iu[1]]
    return {
        "interference": interference,
        "mean_cosine": float(pairs.mean()),
        "negative_pairs": float((pairs < 0).double().mean()),
    }


def fit_broken_power_law(steps: np.ndarray, losses: np.ndarray) -> dict[str, Any]:
    """Loss deceleration: a continuous two-piece line in log-log space,
    ``log L = a + b1 log t + (b2 - b1) max(0, log t - log t*)``; returns ``t_star``, ``loss_star``,
    ``slope_pre`` (b1), ``slope_post`` (b2) and the residual RMS (log space). The break is searched on a grid
    over the interior steps, then refined by least squares (scipy)."""
    from scipy.optimize import least_squares

    t = np.asarray(steps, float)
    y = np.asarray(losses, float)
    if t.shape != y.shape or t.size < 5 or np.any(t <= 0) or np.any(y <= 0):
        raise ValueError("steps and losses must be positive arrays of the same length (>= 5 points)")
    lt, ly = np.log(t), np.log(y)

    def design(c: float) -> np.ndarray:
        return np.stack([np.ones_like(lt), lt, np.maximum(0, lt - c)], 1)

    best = None
    for c in np.linspace(lt[1], lt[-2], 60):
        coef, *_ = np.linalg.lstsq(design(c), ly, rcond=None)
        r = float(np.sum((design(c) @ coef - ly) ** 2))
        if best is None or r < best[0]:
            best = (r, c, coef)
    _, c0, coef0 = best  # type: ignore[misc]

    def resid(p: np.ndarray) -> np.ndarray:
        return design(p[3]) @ p[:3] - ly

    sol = least_squares(resid, np.r_[coef0, c0], bounds=([-np.inf] * 3 + [lt[0]], [np.inf] * 3 + [lt[-1]]))
    a, b1, db, c = sol.x
    return {
        "t_star": float(np.exp(c)),
        "loss_star": float(np.exp(a + b1 * c)),
        "slope_pre": float(b1),
        "slope_post": float(b1 + db),
        "rms_log": float(np.sqrt(np.mean(sol.fun**2))),
    }
