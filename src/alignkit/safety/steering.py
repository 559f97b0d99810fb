"""Representation-engineering steering vectors and the alignment/helpfulness trade-off curve."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.registry import register


def _decoder_layers(model: nn.Module) -> Any:
    base = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(base, "layers", None)
    if layers is None:
        raise ValueError("model: no decoder '.layers' found (a Hugging Face decoder-only model is expected)")
    return layers


@contextlib.contextmanager
def steering(model: nn.Module, layer: int, vector: Tensor, scale: float = 1.0) -> Iterator[None]:
    """Add ``scale * vector`` to the hidden state output of decoder layer ``layer`` inside the ``with`` block."""
    layers = _decoder_layers(model)
    if not -len(layers) <= layer < len(layers):
        raise ValueError(f"layer: {layer} out of range for {len(layers)} decoder layers")
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if vector.dim() != 1 or (hidden is not None and vector.numel() != hidden):
        raise ValueError(f"vector: must be 1-D of size hidden_size={hidden}, got {tuple(vector.shape)}")

    def hook(_m: nn.Module, _inp: Any, out: Any) -> Any:
        if isinstance(out, tuple):
            return (out[0] + scale * vector.to(out[0]), *out[1:])
        return out + scale * vector.to(out)

    handle = layers[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def steering_tradeoff(
    model: nn.Module,
    layer: int,
    vector: Tensor,
    scales: Sequence[float],
    align_eval: Callable[[nn.Module], float],
    help_eval: Callable[[nn.Module], float],
) -> dict[str, Any]:
    """On the Trade-off between Alignment and Helpfulness in Language Models with Steering Methods (Wolf et al.;
    arXiv:2401.16332; earlier versions titled "Tradeoffs Between Alignment and Helpfulness in Language Models
    with Representation Engineering") — the alignment/helpfulness curve of a steering vector.

    Steers ``h_layer <- h_layer + s * v`` for each scale s, measures alignment and helpfulness, and fits the
    paper's bound shapes: alignment linear, helpfulness quadratic in the steering norm ||r|| = |s| * ||v||.

    Formula:
        r = s * v;  align(||r||) ~ a0 + a1 * ||r||;  help(||r||) ~ h0 - h2 * ||r||^2   (least squares)

    Hyper-parameters:
        layer: decoder layer whose output is steered.
        vector: the steering vector v (e.g. a RepE reading vector: mean difference of hidden states).
        scales: the steering scales s to sweep.
        align_eval / help_eval: ``f(model) -> float`` evaluated under steering.

    Returns ``{"norms", "alignment", "helpfulness", "fit": {"a0", "a1", "h0", "h2"}}``.

    Source: abstracts of arXiv 2401.16332 v3/v5 (via the catalog: alignment improves ~linearly and helpfulness
    degrades ~quadratically with the representation-engineering vector's norm). Unverified: how the paper builds
    the vector (layers, scale grid) and its alignment/helpfulness metrics; the fit is our estimator of the bound
    shapes, not the paper's; code dorin133/REPE_alignment_helpfulness_tradeoff not read.
    """
    norms, al, he = [], [], []
    vnorm = float(vector.float().norm())
    for s in scales:
        with steering(model, layer, vector, float(s)):
            al.append(float(align_eval(model)))
            he.append(float(help_eval(model)))
        norms.append(abs(float(s)) * vnorm)
    return {"norms": norms, "alignment": al, "helpfulness": he, "fit": fit_tradeoff(norms, al, he)}


def fit_tradeoff(
    norms: Sequence[float], alignment: Sequence[float], helpfulness: Sequence[float]
) -> dict[str, float]:
    """Least-squares ``alignment = a0 + a1 n`` and ``helpfulness = h0 - h2 n^2``."""
    if not len(norms) == len(alignment) == len(helpfulness) or len(norms) < 2:
        raise ValueError("norms, alignment, helpfulness: need equal lengths >= 2")
    n = torch.tensor(norms, dtype=torch.float64)
    one = torch.ones_like(n)
    a = torch.linalg.lstsq(
        torch.stack([one, n], 1), torch.tensor(alignment, dtype=torch.float64)[:, None]
    ).solution
    h = torch.linalg.lstsq(
        torch.stack([one, -(n**2)], 1), torch.tensor(helpfulness, dtype=torch.float64)[:, None]
    ).solution
    return {"a0": float(a[0]), "a1": float(a[1]), "h0": float(h[0]), "h2": float(h[1])}


register(
    name="steering_tradeoff",
    verification="reconstruction",
    kind="diagnostic",
    family="harmful_finetuning",
    paper="On the Trade-off between Alignment and Helpfulness in Language Models with Steering Methods",
    alias_titles=(
        "Tradeoffs Between Alignment and Helpfulness in Language Models with Representation Engineering",
    ),
    arxiv="2401.16332",
    tags=("safety", "steering"),
    summary="sweep a steering vector's scale; fit alignment linear and helpfulness quadratic in its norm",
)(steering_tradeoff)
