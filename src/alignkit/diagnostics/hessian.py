"""Top Hessian eigenvalue by power iteration and by Lanczos on Hessian-vector products, and the loss-curvature view
of training instability (Gilmer et al., arXiv:2110.04369)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from alignkit.diagnostics._curvature import HVP, LossFn
from alignkit.registry import register

PAPER = "A Loss Curvature Perspective on Training Instability in Deep Learning"


def power_iteration(
    hvp: Callable[[Tensor], Tensor], dim: int, *, iters: int = 100, tol: float = 1e-6, seed: int = 0
) -> tuple[float, Tensor]:
    """Largest-magnitude eigenvalue of the symmetric operator ``hvp`` and its unit eigenvector (float64)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=g, dtype=torch.float64)
    v /= v.norm()
    lam = 0.0
    for _ in range(iters):
        w = hvp(v)
        new = float(v @ w)
        norm = w.norm()
        if norm == 0:
            return 0.0, v
        v = w / norm
        if abs(new - lam) <= tol * max(1.0, abs(new)):
            lam = new
            break
        lam = new
    return lam, v


def lanczos(hvp: Callable[[Tensor], Tensor], dim: int, *, steps: int = 30, seed: int = 0) -> Tensor:
    """Ritz values (ascending) of ``steps`` Lanczos iterations with full re-orthogonalisation: the extreme ones
    converge to the operator's extreme eigenvalues far faster than power iteration."""
    k = min(steps, dim)
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=g, dtype=torch.float64)
    q /= q.norm()
    Q = [q]
    alphas, betas = [], []
    for j in range(k):
        w = hvp(Q[j])
        a = float(Q[j] @ w)
        alphas.append(a)
        basis = torch.stack(Q)
        w = w - basis.T @ (basis @ w)  # full re-orthogonalisation (twice is enough in float64)
        w = w - basis.T @ (basis @ w)
        b = float(w.norm())
        if j == k - 1 or b < 1e-10:
            break
        betas.append(b)
        Q.append(w / b)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigvalsh(T)


@register(
    name="hessian_top_eigenvalue",
    kind="diagnostic",
    family="curvature",
    paper=PAPER,
    arxiv="2110.04369",
    aliases=("sharpness", "lambda_max"),
    tags=("modality:any", "curvature", "stability"),
    verification="paper-formula",
)
def hessian_top_eigenvalue(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    *,
    method: str = "lanczos",
    iters: int = 30,
    learning_rate: float | None = None,
    preconditioner: Sequence[Tensor] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A Loss Curvature Perspective on Training Instability in Deep Learning (arXiv:2110.04369).

    The sharpness lambda_max (top eigenvalue of the loss Hessian) decides whether a gradient step on the local
    quadratic model is stable: gradient descent with learning rate eta diverges along the top eigenvector when
    eta * lambda_max > 2. For adaptive optimisers the paper tracks the preconditioned Hessian P^-1 H. Learning-rate
    warmup lets the model move to flatter regions before the full step is taken.

    Formula:
        H v = d/dtheta <grad L(theta), v>                      (Hessian-vector product, double backward)
        power:   v <- H v / ||H v||,  lambda = v^T H v
        lanczos: tridiagonal T_k of the Krylov space {v, Hv, ..., H^(k-1) v};  lambda_max ~ max eig(T_k)
        preconditioned (Adam, P = diag(sqrt(v_hat) + eps) / eta): eig(P^-1/2 H P^-1/2) = eig(P^-1 H)
        unstable step  iff  eta * lambda_max > 2         (SGD; preconditioned: lambda_max(P^-1 H) > 2)

    Hyper-parameters:
        method: "lanczos" — ours; "power" is the paper's power iteration (slower on clustered spectra).
        iters: 30 — ours (Lanczos steps / power iterations).
        learning_rate: None — the step size eta (ours: optional); given, the result has ``eta_lambda`` and
            ``unstable``.
        preconditioner: None (ours: plain H) — per-parameter diagonal P (same shapes as params), e.g. Adam's
            (sqrt(exp_avg_sq / bias_correction) + eps) / lr; then the eigenvalue is of P^-1 H.
        seed: 0 — start vector (ours: any fixed seed).

    ``loss_fn()`` returns the scalar loss on a fixed batch; ``params`` the tensors the Hessian is taken over.
    Returns ``lambda_max`` (and ``lambda_min`` for Lanczos), ``loss``, ``hvp_calls``, and with a learning rate
    ``eta_lambda`` = eta * lambda_max and ``unstable`` = eta_lambda > 2.
    """
    hvp = HVP(loss_fn, params)
    op: Callable[[Tensor], Tensor] = hvp
    if preconditioner is not None:
        pre = torch.cat([p.detach().reshape(-1) for p in preconditioner]).double()
        if pre.numel() != hvp.dim or bool((pre <= 0).any()):
            raise ValueError("preconditioner must match the params' shapes and be positive")
        s = pre.rsqrt()

        def op(v: Tensor) -> Tensor:
            return s * hvp(s * v)

    if method == "power":
        lam, _ = power_iteration(op, hvp.dim, iters=iters, seed=seed)
        out: dict[str, Any] = {"lambda_max": lam}
    elif method == "lanczos":
        ritz = lanczos(op, hvp.dim, steps=iters, seed=seed)
        out = {"lambda_max": float(ritz[-1]), "lambda_min": float(ritz[0])}
    else:
        raise ValueError(f"method must be 'power' or 'lanczos'; got {method!r}")
    out.update(loss=hvp.loss, hvp_calls=hvp.calls)
    if learning_rate is not None:
        out["eta_lambda"] = learning_rate * out["lambda_max"] if preconditioner is None else out["lambda_max"]
        out["unstable"] = out["eta_lambda"] > 2
    return out


def adam_preconditioner(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> list[Tensor] | None:
    """Adam/AdamW's diagonal preconditioner ``(sqrt(v / (1 - beta2^t)) + eps) / lr`` per parameter, or ``None``
    before the first step (no second-moment state yet)."""
    out = []
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        for p in params:
            if id(p) not in ids:
                continue
            st = optimizer.state.get(p, {})
            if "exp_avg_sq" not in st:
                return None
            step = float(st["step"])
            v_hat = st["exp_avg_sq"] / (1 - group["betas"][1] ** step)
            out.append((v_hat.sqrt() + group["eps"]) / group["lr"])
    return out if len(out) == len(list(params)) else None
