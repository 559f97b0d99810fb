"""FRUGAL: full-rank updates with a state-full optimizer on a subspace and a state-free one on the rest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class Frugal(torch.optim.Optimizer):
    """FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for Scalable Training (Zmushko et al.;
    ICML 2025; arXiv:2411.07837).

    Every 2-D parameter's gradient is split column-wise: on a random subset of ``density`` of the columns
    (re-drawn every ``update_gap`` steps, moments reset) it takes an AdamW step and keeps Adam state; on the
    other columns it takes a state-free signSGD step. The update is full-rank, the state is ``density`` of
    AdamW's. Parameters that are not matrices (norms, biases) keep full AdamW, as in the paper.

    Formula:
        S_t = random column subset of size round(density * n_cols), redrawn when t % update_gap == 0
        g_S = G[:, S],  m <- b1 m + (1-b1) g_S,  v <- b2 v + (1-b2) g_S^2   (m, v reset at a redraw)
        W[:, S]  <- W[:, S]  - lr * (m_hat / (sqrt(v_hat) + eps))
        W[:, ~S] <- W[:, ~S] - lr_free * sign(G[:, ~S])
        W <- W - lr * weight_decay * W        (decoupled, on all entries)

    Hyper-parameters:
        lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0 — AdamW's torch defaults for the state-full part.
        density: 0.25 — the paper's default state-full fraction rho (§5).
        update_gap: 200 — the paper's subspace update frequency T (§5).
        lr_free: None — the state-free (signSGD) step size; None uses lr (ours, because signSGD and Adam steps have
            the same per-coordinate magnitude scale).
        seed: 0 — seeds the column draws (ours; draws depend only on (seed, parameter index, redraw count), so a
            resumed run draws the same columns).
    The column ("RandPerm"-style coordinate) projection is one of the paper's projections; its SVD (GaLore) and
    blockwise variants are not implemented here.
    """

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        density: float = 0.25,
        update_gap: int = 200,
        lr_free: float | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= density <= 1.0:
            raise ValueError(f"density must be in [0, 1]; got {density}")
        if update_gap < 1:
            raise ValueError(f"update_gap must be >= 1; got {update_gap}")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            density=density,
            update_gap=update_gap,
            lr_free=lr_free,
            seed=seed,
        )
        super().__init__(params, defaults)

    def _columns(self, n: int, density: float, seed: int, index: int, draw: int) -> Tensor:
        k = int(round(density * n))
        g = torch.Generator().manual_seed((seed * 1_000_003 + index * 10_007 + draw) % (2**31))
        return torch.randperm(n, generator=g)[:k].sort().values

    @staticmethod
    def _adam(state: dict[str, Any], g: Tensor, b1: float, b2: float, eps: float) -> Tensor:
        state["adam_step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["adam_step"]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        return m_hat / (v_hat.sqrt() + eps)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        index = 0
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, eps = group["lr"], group["eps"]
            lr_free = group["lr_free"] if group["lr_free"] is not None else lr
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                if group["weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                if p.dim() != 2:  # not a matrix: full AdamW
                    if "exp_avg" not in state:
                        state.update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p), adam_step=0)
                    p.add_(self._adam(state, g, b1, b2, eps), alpha=-lr)
                    state["step"] += 1
                    continue
                if state["step"] % group["update_gap"] == 0:  # new subspace: redraw columns, reset moments
                    cols = self._columns(
                        p.shape[1],
                        group["density"],
                        group["seed"],
                        index,
                        state["step"] // group["update_gap"],
                    )
                    state.update(
                        columns=cols,
                        exp_avg=torch.zeros(p.shape[0], cols.numel(), dtype=p.dtype, device=p.device),
                        exp_avg_sq=torch.zeros(p.shape[0], cols.numel(), dtype=p.dtype, device=p.device),
                        adam_step=0,
                    )
                cols = state["columns"].to(
                    device=p.device, dtype=torch.long
                )  # load_state_dict casts it to float
                free = torch.ones(p.shape[1], dtype=torch.bool, device=p.device)
                free[cols] = False
                if cols.numel():
                    p[:, cols] -= lr * self._adam(state, g[:, cols], b1, b2, eps)
                p[:, free] -= lr_free * torch.sign(g[:, free])
                state["step"] += 1
        return loss
