"""Hessian-vector products by double back-propagation, shared by the curvature diagnostics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

LossFn = Callable[[], Tensor]


def trainable(model: nn.Module) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _check(loss_fn: LossFn, params: Sequence[Tensor]) -> list[Tensor]:
    params = list(params)
    if not params:
        raise ValueError("params is empty: pass the tensors (requires_grad=True) the Hessian is taken over")
    if any(not p.requires_grad for p in params):
        raise ValueError("every tensor in params must have requires_grad=True")
    return params


class HVP:
    """``v -> H v`` for ``H`` the Hessian of ``loss_fn()`` w.r.t. ``params`` (flattened, float64 vectors out).

    The gradient graph is built once and reused for every product (``retain_graph``), so the loss is evaluated
    on one fixed batch: ``loss_fn`` must be deterministic (put dropout in eval mode)."""

    def __init__(self, loss_fn: LossFn, params: Sequence[Tensor]) -> None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        self.params = _check(loss_fn, params)
        with sdpa_kernel(SDPBackend.MATH):  # fused attention kernels have no double backward
            loss = loss_fn()
            if loss.dim() != 0:
                raise ValueError(f"loss_fn must return a scalar; got shape {tuple(loss.shape)}")
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        self.loss = float(loss.detach())
        self.grads = [
            g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self.params, strict=True)
        ]
        self.dim = sum(p.numel() for p in self.params)
        self.calls = 0

    def gradient(self) -> Tensor:
        return torch.cat([g.detach().reshape(-1) for g in self.grads]).double()

    def __call__(self, v: Tensor) -> Tensor:
        if v.numel() != self.dim:
            raise ValueError(f"vector has {v.numel()} entries; the parameters have {self.dim}")
        chunks, i = [], 0
        for p in self.params:
            chunks.append(v[i : i + p.numel()].reshape(p.shape).to(p.dtype))
            i += p.numel()
        dot = sum((g * c).sum() for g, c in zip(self.grads, chunks, strict=True))
        hv = torch.autograd.grad(dot, self.params, retain_graph=True, allow_unused=True)
        self.calls += 1
        return torch.cat(
            [
                (h if h is not None else torch.zeros_like(p)).reshape(-1)
                for h, p in zip(hv, self.params, strict=True)
            ]
        ).double()
