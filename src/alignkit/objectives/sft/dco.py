"""DCO: the pass@N-aware loss that limits the model's confidence (Direct Coverage Optimization)."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives._math import clamp_logp, log1mexp
from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch, SFTBatch

PAPER = "Rethinking Fine-Tuning when Scaling Test-Time Compute: Limiting Confidence Improves Mathematical Reasoning"


def coverage_log_prob(seq_logps: Tensor, n: int) -> Tensor:
    """log pass@N = log(1 - (1 - p)^N) for p = exp(seq_logps), computed in log space (stable at p -> 0 and 1)."""
    if n < 1:
        raise ValueError(f"n must be a positive integer; got {n}")
    # p = 1 exactly has log(1 - p) = -inf; keep a hair below so gradients stay finite (their limit is 0).
    x = clamp_logp(seq_logps)
    return log1mexp(n * log1mexp(x))


def confidence_factor(seq_logps: Tensor, n: int) -> Tensor:
    """F(N, p) = N p (1-p)^(N-1) / (1 - (1-p)^N): DCO's gradient is CE's gradient times F (F = 1 at N = 1 and
    F -> 0 as p -> 1, which is what limits confidence)."""
    x = clamp_logp(seq_logps)
    log_f = torch.log(torch.as_tensor(float(n), dtype=x.dtype)) + x + (n - 1) * log1mexp(x)
    return torch.exp(log_f - coverage_log_prob(x, n))


@register_objective(
    name="dco",
    verification="reconstruction",
    aliases=("direct_coverage_optimization",),
    paper=PAPER,
    arxiv="2502.07154",
    family="sft",
    normalisation="token",
    needs_reference=False,
    aggregation="sum",
    tags=("supervised", "algorithm:pointwise", "feedback:demonstration", "data:off-policy"),
)
def dco(batch: SFTBatch | PreferenceBatch, *, n: int = 4) -> LossOutput:
    """Rethinking Fine-Tuning when Scaling Test-Time Compute: Limiting Confidence Improves Mathematical
    Reasoning (Direct Coverage Optimization, DCO, arXiv:2502.07154).

    Cross-entropy trains for pass@1; DCO trains for pass@N — the probability that at least one of N independent
    samples is the target. Its gradient is CE's scaled by F(N, p), which vanishes as p -> 1, so the model stops
    growing more confident on examples it already covers.

    Formula:
        p = pi(y|x) = exp(sum_t log pi(y_t | x, y_<t))
        L = -mean_B log(1 - (1 - p)^N)          (N = 1: L = -log p, the sequence cross-entropy)
        dL/dlog p = -F(N, p),  F(N, p) = N p (1-p)^(N-1) / (1 - (1-p)^N)

    Hyper-parameters:
        n: 4 — N, the test-time sample budget the model is trained for. The paper sweeps N (matching N at train
            and test time); it gives no single default, so 4 is this library's choice.

    On a ``PreferenceBatch`` it reads the chosen completions. Source: arXiv 2502.07154 (v3 HTML abstract) and the
    authors' blog post ("1 - (1 - p)^N" coverage); the step-wise proof-tree variant and how p is estimated for
    chain-of-thought answers are not implemented (not verified).
    """
    if isinstance(batch, PreferenceBatch):
        side = batch.chosen
    elif isinstance(batch, SFTBatch):
        side = batch.side
    else:
        raise TypeError(f"objective 'dco' takes an SFTBatch or a PreferenceBatch, got {type(batch).__name__}")
    losses = -coverage_log_prob(side.seq, n)
    with torch.no_grad():
        factor = confidence_factor(side.seq, n)
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={
            "nll": (-side.seq).detach().mean().item(),
            "dco/confidence_factor": factor.mean().item(),
        },
    )
