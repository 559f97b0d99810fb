"""Early neuron alignment in two-layer ReLU networks with small initialisation (Min, Mallada & Vidal,
arXiv:2307.12851), and the paper's small simulation on orthogonally separable data."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from alignkit.registry import register

PAPER = "Early Neuron Alignment in Two-layer ReLU Networks with Small Initialization"


@register(
    name="neuron_alignment",
    kind="diagnostic",
    family="training_dynamics",
    paper=PAPER,
    arxiv="2307.12851",
    tags=("modality:any", "two-layer-relu", "small-initialisation"),
    verification="paper-formula",
)
def neuron_alignment(W: Tensor, v: Tensor, X: Tensor, y: Tensor) -> dict[str, Any]:
    """Early Neuron Alignment in Two-layer ReLU Networks with Small Initialization (arXiv:2307.12851).

    f(x) = sum_j v_j relu(w_j^T x). With a small balanced initialisation and orthogonally separable data,
    during an early phase (before the loss moves) each first-layer neuron either aligns with the data direction
    of the class matching sign(v_j) or stops being active on any point; the paper bounds the alignment time by
    O(log n / sqrt(mu)) (mu: the data's separability margin), after which the loss falls as the norms grow.

    Formula:
        x_plus = sum_{i: y_i = +1} x_i,   x_minus = sum_{i: y_i = -1} x_i
        cos_j = <w_j, x_{sign(v_j)}> / (||w_j|| ||x_{sign(v_j)}||)
        active_j = [exists i: w_j^T x_i > 0]
        alignment = mean_{j active} cos_j;   stable_rank(W) = ||W||_F^2 / ||W||_2^2

    Hyper-parameters:
        (none) — the class directions are the paper's x_+ / x_- (sums of each class's points).

    ``W`` (h, d) first-layer weights, ``v`` (h,) second layer, ``X`` (n, d), ``y`` (n,) in {-1, +1}. Returns
    ``cos`` (h,), ``active`` (h,) bool, ``alignment`` (mean cos of active neurons), ``active_fraction`` and
    ``stable_rank``.
    """
    if W.dim() != 2 or v.shape != (W.shape[0],) or X.dim() != 2 or X.shape[1] != W.shape[1]:
        raise ValueError(
            f"shapes: W (h, d), v (h,), X (n, d); got {tuple(W.shape)}, {tuple(v.shape)}, {tuple(X.shape)}"
        )
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("y must hold labels in {-1, +1}")
    Wd, vd, Xd = W.detach().double(), v.detach().double(), X.detach().double()
    xp, xm = Xd[y == 1].sum(0), Xd[y == -1].sum(0)
    target = torch.where((vd >= 0)[:, None], xp[None], xm[None])
    cos = (Wd * target).sum(1) / (Wd.norm(dim=1) * target.norm(dim=1)).clamp_min(1e-300)
    active = (Wd @ Xd.T > 0).any(1)
    s = torch.linalg.svdvals(Wd)
    return {
        "cos": cos,
        "active": active,
        "alignment": float(cos[active].mean()) if bool(active.any()) else float("nan"),
        "active_fraction": float(active.double().mean()),
        "stable_rank": float((s**2).sum() / s[0] ** 2) if float(s[0]) > 0 else 0.0,
    }


def orthogonally_separable_data(
    n: int = 40, d: int = 5, *, spread: float = 0.3, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Two classes in opposite cones around +e_1 / -e_1: same-class points have positive inner products and
    points of different classes non-positive ones (the paper's orthogonal separability) for ``spread`` < 0.5."""
    g = torch.Generator().manual_seed(seed)
    y = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)
    u = spread * (2 * torch.rand(n, d - 1, generator=g) - 1) / math.sqrt(d - 1)
    X = torch.cat([y[:, None], u], 1)
    return X.double(), y.double()


def simulate_two_layer(
    X: Tensor,
    y: Tensor,
    *,
    hidden: int = 50,
    init_scale: float = 1e-4,
    lr: float = 0.2,
    steps: int = 1000,
    record_every: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """The paper's simulation: full-batch gradient descent on the logistic loss from a small balanced
    initialisation (w_j = eps * u_j with ||u_j|| = 1, v_j = +-||w_j||). Returns the recorded ``steps``,
    ``loss``, ``alignment`` and ``norm`` (mean ||w_j||) curves and the final ``W``, ``v``."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(hidden, X.shape[1], generator=g, dtype=torch.float64)
    W = (init_scale * u / u.norm(dim=1, keepdim=True)).requires_grad_(True)
    sign = torch.where(torch.arange(hidden) % 2 == 0, 1.0, -1.0).double()
    v = (sign * W.detach().norm(dim=1)).requires_grad_(True)
    rec: dict[str, list[float]] = {"steps": [], "loss": [], "alignment": [], "norm": []}
    for t in range(steps + 1):
        out = torch.relu(X @ W.T) @ v
        loss = torch.nn.functional.softplus(-y * out).mean()
        if t % record_every == 0:
            a = neuron_alignment(W, v, X, y)
            rec["steps"].append(t)
            rec["loss"].append(float(loss.detach()))
            rec["alignment"].append(a["alignment"])
            rec["norm"].append(float(W.detach().norm(dim=1).mean()))
        if t == steps:
            break
        gW, gv = torch.autograd.grad(loss, (W, v))
        with torch.no_grad():
            W -= lr * gW
            v -= lr * gv
    return {**rec, "W": W.detach(), "v": v.detach()}


def predicted_fit_time(X: Tensor, y: Tensor, init_scale: float, lr: float) -> float:
    """Steps until an aligned neuron's norm grows from ``init_scale`` to O(1): near f = 0 the logistic loss has
    -dL/df_i = y_i / (2n), so an aligned balanced neuron grows as exp(r t) with r = ||x_plus|| / (2n);
    t = log(1/eps) / r (divide by ``lr`` for GD steps). The alignment phase itself does not depend on eps."""
    r = float(X[y == 1].sum(0).norm()) / (2 * X.shape[0])
    return math.log(1 / init_scale) / (r * lr)
