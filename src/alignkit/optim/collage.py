"""Collage: AdamW on low-precision (bf16) parameters stored as multi-component floats (no fp32 master weights)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


def fast_two_sum(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Fast2Sum (Dekker) in the tensors' own precision: s = fl(a + b), e = fl(b - fl(s - a)); s + e == a + b
    exactly when |a| >= |b| (every operation is rounded to the dtype, as bf16 arithmetic on CPU is)."""
    s = a + b
    return s, b - (s - a)


def two_sum(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """TwoSum (Knuth): the exact error of fl(a + b) for any magnitudes (6 operations)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def grow(hi: Tensor, lo: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
    """Add ``delta`` to the multi-component float (hi, lo): TwoSum(hi, delta), fold the error into lo, then
    renormalise with Fast2Sum so |lo| <= ulp(hi) / 2."""
    s, e = two_sum(hi, delta)
    return fast_two_sum(s, e + lo)


class CollageAdamW(torch.optim.Optimizer):
    """Collage: Light-Weight Low-Precision Strategy for LLM Training (Yu et al.; ICML 2024; arXiv:2405.03637).

    Reconstruction: rebuilt from the paper's description of multi-component float updates (no official code was
    run here); bf16 storage is emulated on the CPU.

    Parameters live in bf16 (``p`` is the high component). Collage-light keeps, per parameter, a second bf16
    component ``lo`` holding the rounding error, and adds each update with error-free transformations, so updates
    far below bf16's resolution (|update| < ulp(w) / 2, which plain bf16 AdamW rounds away) accumulate instead of
    being lost. The moments are bf16. ``mcf=False`` is plain bf16 AdamW (the baseline that loses them).

    Formula:
        m <- b1 m + (1-b1) g,  v <- b2 v + (1-b2) g^2,  u = lr * (m_hat / (sqrt(v_hat) + eps) + wd * (w_hi + w_lo))
        (w_hi, w_lo) <- Grow((w_hi, w_lo), -u):   (s, e) = TwoSum(w_hi, -u);  (w_hi, w_lo) = Fast2Sum(s, e + w_lo)
        every operation is rounded to bf16; the model reads w_hi

    Hyper-parameters:
        lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0 — AdamW's torch defaults (the paper's runs use
            its models' usual AdamW settings; its §5 notes Collage matters most with beta2 = 0.999-like settings).
        mcf: True — Collage-light (the paper's MCF on the parameters); False: plain bf16 AdamW.
    Collage-plus (MCF second moment) and the paper's EDQ metric are provided as :func:`effective_descent_quality`
    only for the parameter update.
    """

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        mcf: bool = True,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, mcf=mcf))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dtype != torch.bfloat16:
                    raise TypeError(
                        f"CollageAdamW keeps bf16 parameters; got a {p.dtype} parameter {tuple(p.shape)}"
                    )

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.to(torch.bfloat16)
                st = self.state[p]
                if not st:
                    st.update(
                        step=0,
                        exp_avg=torch.zeros_like(p),
                        exp_avg_sq=torch.zeros_like(p),
                        lo=torch.zeros_like(p),
                    )
                st["step"] += 1
                t = st["step"]
                st["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat = st["exp_avg"] / (1 - b1**t)
                v_hat = st["exp_avg_sq"] / (1 - b2**t)
                u = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    u = u + group["weight_decay"] * (p + st["lo"])
                delta = -group["lr"] * u
                if group["mcf"]:
                    hi, lo = grow(p.detach().clone(), st["lo"], delta)
                    p.copy_(hi)
                    st["lo"] = lo
                else:
                    p.add_(delta)
        return loss

    def master_value(self, p: Tensor) -> Tensor:
        """The parameter's full value hi + lo in float64 (what an fp32 master copy would hold)."""
        lo = self.state[p]["lo"] if p in self.state and "lo" in self.state[p] else torch.zeros_like(p)
        return p.detach().double() + lo.double()


def effective_descent_quality(before: Tensor, after: Tensor, intended: Tensor) -> float:
    """Collage's effective descent quality: the share of the intended update that lands after rounding,
    EDQ = <after - before, intended> / ||intended||^2 (1: all of it; 0: none). Computed in float64."""
    d, u = (after.double() - before.double()).flatten(), intended.double().flatten()
    return float(d @ u / (u @ u))
