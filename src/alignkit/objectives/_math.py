"""Numerically safe helpers shared by the seed-paper objectives."""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LN2 = math.log(2.0)


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, with finite gradients everywhere: each branch only ever sees the inputs it
    is stable on (a plain ``torch.where`` over both branches leaks 0 * inf = NaN into the gradient)."""
    small = x < -_LN2
    a = torch.where(small, x, torch.full_like(x, -1.0))
    b = torch.where(small, torch.full_like(x, -1.0), x)
    return torch.where(small, torch.log1p(-torch.exp(a)), torch.log(-torch.expm1(b)))


def log_odds(logp: Tensor) -> Tensor:
    """log(p / (1 - p)) from log p (finite gradient for log p close to 0)."""
    return logp - log1mexp(logp)


def clamp_logp(x: Tensor) -> Tensor:
    """Keep log-probs a hair below 0 so log(1 - p) stays finite (its gradient's limit is what the losses use)."""
    return x.clamp(max=-1e-12 if x.dtype == torch.float64 else -1e-6)
