"""Flatness of the pre-training loss at a solution (Liu et al., arXiv:2210.14199): models with the same
pre-training loss transfer differently, and the flatter one (smaller Hessian trace) transfers better."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from alignkit.diagnostics._curvature import HVP, LossFn
from alignkit.diagnostics.hessian import lanczos
from alignkit.registry import register

PAPER = "Same Pre-training Loss, Better Downstream: Implicit Bias Matters for Language Models"


@register(
    name="hessian_trace",
    kind="diagnostic",
    family="curvature",
    paper=PAPER,
    arxiv="2210.14199",
    aliases=("flatness",),
    tags=("modality:any", "curvature", "flatness"),
    verification="paper-formula",
)
def hessian_trace(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    *,
    n_samples: int = 32,
    lanczos_steps: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Same Pre-training Loss, Better Downstream: Implicit Bias Matters for Language Models (arXiv:2210.14199).

    Among models that reach the same (minimal) pre-training loss, the trace of the Hessian of the pre-training
    loss separates those that transfer well (small trace, flat) from those that do not; SGD's noise implicitly
    lowers it. The trace is estimated by Hutchinson's estimator on Hessian-vector products.

    Formula:
        Tr(H) = E_v[v^T H v],  v with i.i.d. Rademacher (+-1) entries
        estimate = (1/m) sum_k v_k^T H v_k;   standard error = std_k(v_k^T H v_k) / sqrt(m)
        (optional) lambda_max from Lanczos on the same HVPs, and Tr(H)/lambda_max (the effective rank)

    Hyper-parameters:
        n_samples: 32 — ours (m); the estimator is unbiased for any m, its error shrinks as 1/sqrt(m).
        lanczos_steps: 0 — ours; > 0 also reports lambda_max.
        seed: 0 — the Rademacher draws (ours: any fixed seed).

    Returns ``trace``, ``trace_stderr``, ``loss``, ``n_params`` (and ``trace_per_param``; with Lanczos
    ``lambda_max``). For a diagonal H the estimate is exact from a single sample.
    """
    if n_samples < 1:
        raise ValueError("n_samples must be >= 1")
    hvp = HVP(loss_fn, params)
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(n_samples):
        v = torch.randint(0, 2, (hvp.dim,), generator=g, dtype=torch.float64) * 2 - 1
        vals.append(float(v @ hvp(v)))
    t = torch.tensor(vals, dtype=torch.float64)
    out: dict[str, Any] = {
        "trace": float(t.mean()),
        "trace_stderr": float(t.std() / n_samples**0.5) if n_samples > 1 else float("nan"),
        "trace_per_param": float(t.mean()) / hvp.dim,
        "loss": hvp.loss,
        "n_params": hvp.dim,
    }
    if lanczos_steps > 0:
        out["lambda_max"] = float(lanczos(hvp, hvp.dim, steps=lanczos_steps, seed=seed)[-1])
    return out
