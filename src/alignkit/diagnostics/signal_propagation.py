"""Layer-wise feature learning through the tangent kernel (Lou, Mingard & Hayou, arXiv:2110.11749): how well each
layer's tangent kernel aligns with the labels, layer by layer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.registry import register

PAPER = "Feature Learning and Signal Propagation in Deep Neural Networks"


def kernel_alignment(K: Tensor, Y: Tensor, *, centered: bool = True) -> float:
    """``<K, Y Y^T>_F / (||K||_F ||Y Y^T||_F)``, both centred by ``H = I - 11^T/n`` when ``centered``."""
    n = K.shape[0]
    if K.shape != (n, n) or Y.shape[0] != n:
        raise ValueError(f"K must be (n, n) and Y (n, k); got {tuple(K.shape)} and {tuple(Y.shape)}")
    K, Y = K.double(), Y.double().reshape(n, -1)
    T = Y @ Y.T
    if centered:
        H = torch.eye(n, dtype=torch.float64) - 1.0 / n
        K, T = H @ K @ H, H @ T @ H
    den = float(K.norm() * T.norm())
    return float((K * T).sum()) / den if den > 0 else float("nan")


def _default_groups(model: nn.Module) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(name.rsplit(".", 1)[0] if "." in name else name, []).append(name)
    return groups


@register(
    name="layer_alignment",
    kind="diagnostic",
    family="training_dynamics",
    paper=PAPER,
    arxiv="2110.11749",
    aliases=("tangent_kernel_alignment", "signal_propagation"),
    tags=("modality:any", "feature-learning", "tangent-kernel"),
    verification="paper-formula",
)
def layer_alignment(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    forward: Callable[[nn.Module, Tensor], Tensor] | None = None,
    centered: bool = True,
) -> dict[str, float]:
    """Feature Learning and Signal Propagation in Deep Neural Networks (arXiv:2110.11749).

    The tangent kernel of layer l, K_l = J_l J_l^T (J_l: Jacobian of the network outputs on a batch w.r.t. the
    parameters of layer l), measures how that layer's weights move the function; its alignment with the label
    kernel Y Y^T measures how much the layer learns label-relevant features. The paper finds that trained
    networks show an ascent-then-descent of the alignment over depth ("equilibrium hypothesis"), governed by
    signal propagation at initialisation.

    Formula:
        K_l[i, j] = sum_k <d f_k(x_i) / d theta_l, d f_k(x_j) / d theta_l>
        A_l = <H K_l H, H Y Y^T H>_F / (||H K_l H||_F ||H Y Y^T H||_F),   H = I - 11^T / n   (centred)

    Hyper-parameters:
        groups: None — ours: parameters grouped by their module (one entry per Linear layer in an MLP); give a
            mapping {layer name: [parameter names]} to group otherwise.
        forward: None — ``model(x)`` (ours); pass ``forward(model, x) -> (n, k)`` outputs for other models.
        centered: True — the centred alignment (ours: the uncentred one is dominated by the kernel's mean).

    ``y``: (n, k) label matrix (one-hot for classification) or (n,) targets. Returns {layer: A_l} in model order.
    """
    from torch.func import jacrev

    forward = forward or (lambda m, inp: m(inp))
    params = dict(model.named_parameters())
    groups = dict(groups) if groups is not None else _default_groups(model)
    Y = y.reshape(y.shape[0], -1)
    out: dict[str, float] = {}
    for layer, names in groups.items():
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(f"layer {layer!r}: no parameters named {missing}")
        rest = {k: v.detach() for k, v in params.items() if k not in names}

        def f(sub: dict[str, Tensor], rest: dict[str, Tensor] = rest) -> Tensor:
            return forward(_Bound(model, {**rest, **sub}), x).reshape(x.shape[0], -1)

        jac = jacrev(f)({n: params[n].detach() for n in names})
        J = torch.cat([j.reshape(x.shape[0], -1, j[0, 0].numel()) for j in jac.values()], -1)  # (n, k, P)
        K = torch.einsum("akp,bkp->ab", J.double(), J.double())
        out[layer] = kernel_alignment(K, Y, centered=centered)
    return out


class _Bound(nn.Module):
    """``model`` called with the given parameter tensors (``torch.func.functional_call``)."""

    def __init__(self, model: nn.Module, params: dict[str, Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "_m", model)
        object.__setattr__(self, "_p", params)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        from torch.func import functional_call

        return functional_call(self._m, self._p, args, kwargs)
