"""Task arithmetic: add weighted task vectors (fine-tuned minus base) to the base model."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alignkit.merging.checkpoint import StateDict, merge_deltas
from alignkit.registry import register


def resolve_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Per-model weights (default 1 each); their number must equal the number of models."""
    if weights is None:
        return [1.0] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise ValueError(f"got {len(weights)} weights for {n} models")
    return weights


def weighted_sum(
    task_tensors: Sequence[torch.Tensor], weights: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """``sum_t w_t * tau_t`` over stacked task tensors (PEFT ``merge_utils.task_arithmetic``)."""
    stacked = torch.stack(list(task_tensors), dim=0)
    w = torch.as_tensor(weights, dtype=stacked.dtype, device=stacked.device)
    w = w.view(w.shape + (1,) * (stacked.dim() - 1))
    return (stacked * w).sum(dim=0)


@register(
    name="task_arithmetic",
    verification="library-parity",
    kind="merge",
    family="task_vector",
    paper="Editing Models with Task Arithmetic",
    arxiv="2212.04089",
    summary="theta = theta_0 + lambda * sum_t w_t (theta_t - theta_0)",
)
def task_arithmetic(
    base: StateDict,
    models: Sequence[StateDict],
    *,
    weights: Sequence[float] | None = None,
    scaling: float = 1.0,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Editing Models with Task Arithmetic (Ilharco et al., ICLR 2023; arXiv:2212.04089).

    A task vector is the fine-tuned weights minus the pre-trained weights; adding (or, with a negative weight,
    subtracting) task vectors to the pre-trained model adds (or removes) the tasks' behaviour.

    Formula:
        tau_t   = theta_t - theta_0                       (per tensor, for every float tensor)
        theta   = theta_0 + scaling * sum_t w_t * tau_t

    Hyper-parameters:
        weights: per-model weights w_t (default 1 each, the paper's task addition; a negative weight is the
            paper's task negation).
        scaling: lambda (default 1.0, the ``scaling_coef`` default of the official ``task_vectors`` code;
            the paper picks lambda on held-out validation data from {0, 0.05, ..., 1}).
        progress: show a rich progress bar over tensors (default False).
            Operational (alignkit's interface, not a paper hyper-parameter).

    Source: the paper's definition (task vector = theta_ft - theta_pre, theta_new = theta + lambda * sum tau);
    checked number-for-number against ``peft.utils.merge_utils.task_arithmetic`` in tests/merging.
    """
    w = resolve_weights(weights, len(models))
    return merge_deltas(
        base,
        models,
        lambda _k, taus: scaling * weighted_sum(taus, w),
        desc="task arithmetic",
        progress=progress,
    )
