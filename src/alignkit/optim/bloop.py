"""Bloop: gradient surgery with an EMA — the auxiliary gradient is projected orthogonally to an EMA of the main
loss's gradient before being added."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor


def bloop_direction(
    g_main: Sequence[Tensor],
    g_aux: Sequence[Tensor],
    ema_main: Sequence[Tensor] | None,
    *,
    lam: float,
    ema: float,
    eps: float = 1e-7,
) -> tuple[list[Tensor], list[Tensor]]:
    """Bloop's update direction and the new EMA (all tensors of the model taken together, as one vector).

    ``ema_main=None`` initialises the EMA with the main gradient (the official ``init="grad"``)."""
    m = (
        [g.clone() for g in g_main]
        if ema_main is None
        else [a + ema * (g - a) for a, g in zip(ema_main, g_main, strict=True)]
    )
    dot = sum((a * b).sum() for a, b in zip(m, g_aux, strict=True))
    sq = sum((a * a).sum() for a in m)
    ratio = dot / (sq + eps)
    direction = [gm + lam * (ga - ratio * a) for gm, ga, a in zip(g_main, g_aux, m, strict=True)]
    return direction, m


class Bloop(torch.optim.Optimizer):
    """Careful with that Scalpel: Improving Gradient Surgery with an EMA (Bloop; Hsieh, Thornton, Ndiaye, Klein,
    Cuturi, Ablin; ICML 2024; arXiv:2402.02998).

    For a main loss and an auxiliary loss, steps along the main gradient plus the auxiliary gradient projected on
    the orthogonal complement of an EMA of the main gradient, so the auxiliary loss is optimised only in
    directions that (to first order) leave the main loss unchanged. The direction is handed to a base optimizer.

    Formula:
        m <- m + ema * (g_main - m)                     (m = g_main at the first step)
        pi(g_aux; m) = g_aux - (<g_aux, m> / (||m||^2 + eps)) m        (over all parameters at once)
        d = g_main + lam * pi(g_aux; m);   w <- base_optimizer_step(w, d)

    Hyper-parameters:
        lam: 0.1 — the official ``BloopState(lbda=0.1)`` default (apple/ml-bloop src/bloop/optim.py).
        ema: 0.1 — the official ``BloopState(ema=0.1)``: the weight of the new gradient (beta = 0.9).
        eps: 1e-7 — the official ``tree_proj(eps=1e-7)``.
        base_optimizer: torch.optim.AdamW — ours (the trainer's optimizer).

    Use: ``optimizer.backward(main_loss, aux_loss)`` then ``optimizer.step()``. A plain ``loss.backward()`` then
    ``step()`` (no auxiliary loss) is the base optimizer's step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.AdamW,
        *,
        lam: float = 0.1,
        ema: float = 0.1,
        eps: float = 1e-7,
        **base_kwargs: Any,
    ) -> None:
        if not 0 < ema <= 1:
            raise ValueError(f"ema must be in (0, 1]; got {ema}")
        super().__init__(params, dict(lam=lam, ema=ema, eps=eps, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self._main: list[Tensor] | None = None

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def backward(self, main_loss: Tensor, aux_loss: Tensor) -> None:
        """Compute both gradients; ``.grad`` gets the auxiliary one, the main one is kept for :meth:`step`."""
        params = self._params()
        g_main = torch.autograd.grad(main_loss, params, retain_graph=True, allow_unused=True)
        g_aux = torch.autograd.grad(aux_loss, params, allow_unused=True)
        self._main = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_main, strict=True)]
        for p, g in zip(params, g_aux, strict=True):
            p.grad = torch.zeros_like(p) if g is None else g

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._main is not None:
            params = self._params()
            group = self.param_groups[0]
            prev = (
                [self.state[p]["grad_main_ema"] for p in params]
                if "grad_main_ema" in self.state[params[0]]
                else None
            )
            aux = [p.grad for p in params]
            d, m = bloop_direction(
                self._main, aux, prev, lam=group["lam"], ema=group["ema"], eps=group["eps"]
            )
            for p, dp, mp in zip(params, d, m, strict=True):
                p.grad = dp
                self.state[p]["grad_main_ema"] = mp
            self._main = None
        self.base_optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        base = self.base_optimizer.state_dict()
        params = self._params()
        ema = (
            [self.state[p]["grad_main_ema"] for p in params]
            if params and "grad_main_ema" in self.state[params[0]]
            else None
        )
        return {"base": base, "grad_main_ema": ema}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict["base"])
        self.param_groups = self.base_optimizer.param_groups
        if state_dict["grad_main_ema"] is not None:
            for p, m in zip(self._params(), state_dict["grad_main_ema"], strict=True):
                self.state[p]["grad_main_ema"] = m.clone()
