"""Sharpness-Aware Minimization (SAM) and its adaptive variant (ASAM), wrapping any base optimizer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class SAM(torch.optim.Optimizer):
    """Sharpness-Aware Minimization for Efficiently Improving Generalization (Foret, Kleiner, Mobahi, Neyshabur;
    arXiv:2010.01412), with the adaptive variant of ASAM (Kwon et al., arXiv:2102.11600).

    Each step takes two forward/backward passes: the gradient at w gives the worst-case perturbation e inside
    an L2 ball of radius rho; the gradient at w + e is then applied by the base optimizer at w.

    Formula:
        e(w) = rho * T_w^2 g / ||T_w g||_2,   g = grad L(w),   T_w = I (SAM) or diag(|w|) (adaptive, ASAM)
        w <- base_optimizer_step(w, grad L(w)|_{w + e(w)})

    Hyper-parameters:
        rho: 0.05 — the paper's CIFAR default (§3; davda54/sam's default; ASAM suggests ~10x larger, e.g. 0.5-2).
        adaptive: False — plain SAM (the paper's; davda54/sam's default); True is ASAM's scale-invariant ball
            (as davda54/sam's ``adaptive=True``).
        base_optimizer: torch.optim.AdamW — ours (the trainer's optimizer); the paper uses SGD with momentum.

    Use: compute the gradients at w as usual, then pass a closure that recomputes the loss and calls
    backward (it runs at w + e; SAM has zeroed the gradients before calling it)::

        loss = loss_fn(); loss.backward()                       # pass 1, at w
        optimizer.step(lambda: (l := loss_fn()).backward() or l)  # pass 2, at w + e; then the base step at w
        optimizer.zero_grad()

    or by hand: ``first_step(zero_grad=True)``; recompute and backward; ``second_step(zero_grad=True)``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.AdamW,
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        **base_kwargs: Any,
    ) -> None:
        if rho < 0:
            raise ValueError(f"rho must be >= 0; got {rho}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _grad_norm(self) -> Tensor:
        norms = [
            ((p.abs() if g["adaptive"] else 1.0) * p.grad).norm(p=2)
            for g in self.param_groups
            for p in g["params"]
            if p.grad is not None
        ]
        if not norms:
            raise RuntimeError("SAM.first_step: no parameter has a gradient; call loss.backward() first")
        return torch.stack(norms).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move to w + e(w) (remembering e) using the gradients currently in ``.grad``."""
        norm = self._grad_norm()
        for g in self.param_groups:
            scale = g["rho"] / (norm + 1e-12)
            for p in g["params"]:
                if p.grad is None:
                    continue
                e = (p.pow(2) if g["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e)
                self.state[p]["e_w"] = e
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to w and take the base optimizer's step with the gradients computed at w + e."""
        for g in self.param_groups:
            for p in g["params"]:
                e = self.state[p].pop("e_w", None)
                if e is not None:
                    p.sub_(e)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad(set_to_none=True)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One SAM step. ``closure`` must recompute the loss and call backward; ``.grad`` must already hold
        the gradients at the current weights (pass 1)."""
        if closure is None:
            raise ValueError(
                "SAM.step needs a closure that recomputes the loss and calls backward (two passes per step); "
                "or call first_step() / second_step() yourself"
            )
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state (SAM's own perturbation lives only between the two passes of a step)."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
