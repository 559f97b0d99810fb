"""AlignGuard-LoRA: Fisher-guided split of an update, Fisher/task/collision regularisers (a reconstruction)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.registry import register
from alignkit.safety._common import snapshot, trainable
from alignkit.train.hooks import Hook, MicroBatch, TrainContext
from alignkit.types import LossOutput


def fisher_diagonal(
    model: nn.Module, loss_fn: Callable[[Any], Tensor], batches: Iterable[Any]
) -> dict[str, Tensor]:
    """Empirical diagonal Fisher ``F_ii = mean_b (d loss_b / d theta_i)^2`` over alignment batches."""
    params = trainable(model)
    acc = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params}
    count = 0
    for b in batches:
        grads = torch.autograd.grad(loss_fn(b), [p for _, p in params], allow_unused=True)
        for (n, _), g in zip(params, grads, strict=True):
            if g is not None:
                acc[n] += g.detach().float() ** 2
        count += 1
    if count == 0:
        raise ValueError("batches: needs at least one batch")
    return {n: a / count for n, a in acc.items()}


def alignguard_regularizer(
    delta: Mapping[str, Tensor],
    fisher: Mapping[str, Tensor],
    *,
    lam_a: float = 1.0,
    lam_t: float = 1.0,
    lam_c: float = 1.0,
    alpha: float = 0.5,
) -> dict[str, Tensor]:
    """The three regularisers on an update split by the normalised Fisher ``s = F / max F`` (see ``AlignGuardHook``).

    Returns ``{"fisher", "task", "overlap", "separation", "total"}`` (``total`` weighted by the lambdas)."""
    missing = [n for n in delta if n not in fisher]
    if missing:
        raise ValueError(f"fisher: no entry for parameter {missing[0]!r}")
    if not delta:
        raise ValueError("delta: empty")
    fmax = torch.stack([fisher[n].max() for n in delta]).max().clamp_min(1e-30)
    fis, task, over, dot, na, nt = [], [], [], [], [], []
    for n, d in delta.items():
        f = fisher[n].to(d)
        s = f / fmax
        d_a, d_t = s * d, (1 - s) * d
        fis.append((f * d_a**2).sum())
        task.append((d_t**2).sum())
        over.append((s * (d_a * d_t).abs()).sum())
        dot.append((d_a * d_t).sum())
        na.append((d_a**2).sum())
        nt.append((d_t**2).sum())
    fisher_term, task_term, overlap = torch.stack(fis).sum(), torch.stack(task).sum(), torch.stack(over).sum()
    sep = torch.stack(dot).sum() ** 2 / (torch.stack(na).sum() * torch.stack(nt).sum() + 1e-12)
    collision = alpha * overlap + (1 - alpha) * sep
    total = lam_a * fisher_term + lam_t * task_term + lam_c * collision
    return {"fisher": fisher_term, "task": task_term, "overlap": overlap, "separation": sep, "total": total}


class AlignGuardHook(Hook):
    """AlignGuard-LoRA: Alignment-Preserving Fine-Tuning via Fisher-Guided Decomposition and Riemannian-Geodesic
    Collision Regularization (Das et al., 2025; arXiv:2508.02079).

    Adds to the fine-tuning loss a penalty on the update ``dW = theta - theta_0`` of every trainable parameter
    (with LoRA, the adapter parameters' own update), split into an alignment-critical part (weighted by the
    normalised diagonal Fisher of an alignment loss) and a task part.

    Formula:
        s = F / max(F)  (diagonal Fisher F from ``fisher_diagonal`` on alignment data, max over all tensors)
        dW_A = s * dW,  dW_T = (1 - s) * dW
        R = lam_a * sum F * dW_A^2                                 (Fisher regulariser)
          + lam_t * ||dW_T||^2                                      (task regulariser)
          + lam_c * [ alpha * sum s * |dW_A * dW_T|                 (Riemannian overlap)
                      + (1 - alpha) * cos^2(vec dW_A, vec dW_T) ]   (geodesic separation)
        L = L_task + R

    Hyper-parameters:
        fisher: ``{name: F}`` for the trainable parameters.
        lam_a, lam_t, lam_c: the three weights (default 1 each; ours, neutral: the paper's values were not found).
        alpha: overlap/separation blend (default 0.5; ours, an even blend: the paper's value was not found).

    Every lambda 0 gives plain fine-tuning; a zero update gives R = 0.

    Source: only the abstract (arXiv 2508.02079: task loss + FIM-based regulariser restricting updates in
    alignment-sensitive subspaces + task-specific regulariser + collision-aware regulariser blending Riemannian
    overlap and geodesic separation). UNVERIFIED: every formula above is a reconstruction (the soft Fisher split
    in place of the paper's projection onto top Fisher eigendirections, the overlap weights, the cos^2
    separation, all defaults); the authors' code was not found, and a second search of the paper's text (issue
    #14) found only its abstract. Treat results as this library's variant.
    """

    def __init__(
        self,
        fisher: Mapping[str, Tensor],
        *,
        lam_a: float = 1.0,
        lam_t: float = 1.0,
        lam_c: float = 1.0,
        alpha: float = 0.5,
    ) -> None:
        self.fisher = dict(fisher)
        self.kw = {"lam_a": lam_a, "lam_t": lam_t, "lam_c": lam_c, "alpha": alpha}
        self.last: dict[str, float] = {}

    def on_train_begin(self, ctx: TrainContext) -> None:
        self.anchor = snapshot(ctx.model)
        missing = [n for n in self.anchor if n not in self.fisher]
        if missing:
            raise ValueError(f"AlignGuardHook fisher: no entry for trainable parameter {missing[0]!r}")

    def extra_loss(self, ctx: TrainContext, micro: MicroBatch, out: LossOutput) -> Tensor | None:
        delta = {n: p - self.anchor[n] for n, p in trainable(ctx.model)}
        terms = alignguard_regularizer(delta, self.fisher, **self.kw)
        self.last = {f"alignguard/{k}": float(v.detach()) for k, v in terms.items() if k != "total"}
        return terms["total"]

    def on_step_end(self, ctx: TrainContext, record: dict[str, Any]) -> None:
        record.update(self.last)


register(
    name="alignguard_lora",
    verification="reconstruction",
    kind="defence",
    family="harmful_finetuning",
    paper="AlignGuard-LoRA: Alignment-Preserving Fine-Tuning via Fisher-Guided Decomposition and "
    "Riemannian-Geodesic Collision Regularization",
    arxiv="2508.02079",
    tags=("safety", "hook", "lora", "unverified-formula"),
    summary="Fisher-weighted split of the update; Fisher, task and collision regularisers (reconstruction)",
)(AlignGuardHook)
