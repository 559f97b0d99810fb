"""CAO: multi-objective DPO with per-objective losses and gradient balancing (YinYangAlign)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.batches_extra import extra
from alignkit.objectives.preference._pairwise import pair_terms, preference_metrics
from alignkit.registry import register, register_objective
from alignkit.types import LossOutput, PreferenceBatch

PAPER = (
    "YinYangAlign: Benchmarking Contradictory Objectives and Proposing Multi-Objective Optimization based DPO "
    "for Text-to-Image Alignment"
)
ARXIV = "2502.03512"


def _objective_ids(batch: PreferenceBatch, num_objectives: int | None) -> tuple[Tensor, int]:
    ids = extra(batch, "objective_ids")
    if ids is None:
        ids = torch.zeros(batch.batch_size, dtype=torch.long)
    ids = ids.long()
    k = int(ids.max()) + 1 if num_objectives is None else num_objectives
    if int(ids.max()) >= k:
        raise ValueError(f"objective_ids holds {int(ids.max())} but num_objectives is {k}")
    return ids, k


def objective_losses(
    batch: PreferenceBatch, *, beta: float = 0.1, num_objectives: int | None = None
) -> Tensor:
    """Per-objective DPO losses L_k = mean over objective k's pairs of -log sigma(beta u) — shape (K,); an
    objective without pairs in the batch gets 0. Differentiate each to get the gradients for
    :func:`min_norm_weights`."""
    t = pair_terms(batch, why="objective 'cao'")
    ids, k = _objective_ids(batch, num_objectives)
    per_pair = -F.logsigmoid(beta * t.delta_score)
    onehot = F.one_hot(ids, k).to(per_pair.dtype)  # (B, K)
    counts = onehot.sum(0)
    return (onehot * per_pair.unsqueeze(-1)).sum(0) / counts.clamp_min(1)


@register(
    name="cao_gradient_balancing",
    verification="reconstruction",
    kind="optimizer",
    family="preference",
    paper=PAPER,
    arxiv=ARXIV,
    tags=("multi-objective", "algorithm:pairwise", "feedback:preference"),
)
def min_norm_weights(grads: Tensor, *, iters: int = 250, tol: float = 1e-10) -> Tensor:
    """Gradient-balancing weights for CAO, from YinYangAlign: Benchmarking Contradictory Objectives and Proposing
    Multi-Objective Optimization based DPO for Text-to-Image Alignment (arXiv:2502.03512): the convex combination of per-objective gradients
    with the smallest norm (MGDA, Sener & Koltun 2018). Stepping along -sum_k w_k g_k decreases every objective
    to first order unless the point is Pareto-stationary (then the combination is 0).

    Formula:
        w = argmin_{w in simplex} || sum_k w_k g_k ||^2      (Frank-Wolfe; exact for K = 2:
        w_1 = clip(<g_2 - g_1, g_2> / ||g_1 - g_2||^2, 0, 1))

    Hyper-parameters:
        iters: 250 — Frank-Wolfe iterations for K > 2 (ours: ample for small K).
        tol: 1e-10 — stop when the step changes w by less than this (ours).

    ``grads``: (K, P) one flattened gradient per objective. The paper balances its per-axiom DPO losses with a
    "Synergy Jacobian"; its exact update rule was not available, so MGDA's min-norm point is this library's
    stand-in (catalogue entry 111: UNVERIFIED).

    Guessed after re-checking: the balancing rule (Synergy Jacobian): a second search (issue #14) found only
    abstracts and summaries; still guessed.
    """
    if grads.dim() != 2:
        raise ValueError(f"grads must have shape (K, P); got {tuple(grads.shape)}")
    g = grads.detach().double()
    k = g.shape[0]
    if k == 1:
        return torch.ones(1, dtype=grads.dtype)
    gram = g @ g.T
    if k == 2:
        diff = gram[0, 0] + gram[1, 1] - 2 * gram[0, 1]
        w1 = torch.tensor(0.5, dtype=g.dtype) if diff <= 0 else ((gram[1, 1] - gram[0, 1]) / diff).clamp(0, 1)
        return torch.stack([w1, 1 - w1]).to(grads.dtype)
    w = torch.full((k,), 1.0 / k, dtype=g.dtype)
    for _ in range(iters):
        i = int(torch.argmin(gram @ w))
        v = gram @ w
        a, b, c = w @ v, v[i], gram[i, i]  # |u|^2, <u, g_i>, |g_i|^2 with u = sum w g
        denom = a - 2 * b + c
        step = torch.tensor(1.0, dtype=g.dtype) if denom <= 0 else ((a - b) / denom).clamp(0, 1)
        new = (1 - step) * w
        new[i] += step
        if (new - w).abs().sum() < tol:
            w = new
            break
        w = new
    return w.to(grads.dtype)


@register_objective(
    name="cao",
    verification="reconstruction",
    aliases=("yinyang_dpo", "contradictory_alignment_optimization"),
    paper=PAPER,
    arxiv=ARXIV,
    family="preference",
    needs_reference=True,
    aggregation="sum",
    batch_type=PreferenceBatch,
    optional={"objective_ids": "no objective column: every pair belongs to one objective (K = 1)"},
    tags=(
        "paired",
        "reference",
        "multi-objective",
        "algorithm:pairwise",
        "feedback:preference",
        "data:off-policy",
    ),
)
def cao(
    batch: PreferenceBatch,
    *,
    beta: float = 0.1,
    weights: Sequence[float] | None = None,
    synergy_weight: float = 0.0,
    num_objectives: int | None = None,
) -> LossOutput:
    """YinYangAlign: Benchmarking Contradictory Objectives and Proposing Multi-Objective Optimization based DPO
    for Text-to-Image Alignment (Contradictory Alignment Optimization, CAO, arXiv:2502.03512).

    Each pair belongs to one of K possibly contradictory objectives (faithfulness vs artistic freedom, ...).
    CAO keeps one DPO loss per objective and combines them with weights that balance their gradients
    (:func:`min_norm_weights` computes such weights from per-objective gradients), plus a global term over all
    pairs.

    Formula:
        L_k = mean_{i in objective k} -log sigma(beta u_i),  u = log-ratio(y_w) - log-ratio(y_l)
        L = sum_k w_k L_k + lambda_syn * mean_i -log sigma(beta u_i)
        (w uniform 1/K by default; K = 1 and lambda_syn = 0: L is DPO)

    Hyper-parameters:
        beta: 0.1 — DPO's beta (ours: the DPO paper's 0.1; the CAO paper's value was not read here).
        weights: None — w_k (K values, e.g. from ``min_norm_weights``); None = uniform 1/K (ours).
        synergy_weight: 0.0 — lambda_syn, weight of the global DPO term over all pairs (ours: off).
        num_objectives: None — K; None = 1 + the largest objective id in the batch (ours).

    Inputs: a :class:`alignkit.batches_extra.MultiObjectivePreferenceBatch` carries ``objective_ids``; a plain
    ``PreferenceBatch`` is one objective. Source: the abstract and summaries of arXiv 2502.03512 (catalogue
    entry 111). UNVERIFIED: the paper's exact synergy term, its Synergy-Jacobian weight update and its per-axiom
    regularisers (Sinkhorn/Wasserstein) — the regularisers are not implemented and lambda_syn defaults to 0.

    Guessed after re-checking: the synergy term and its weighting: a second search (issue #14) found only
    abstracts and summaries; still guessed.
    """
    t = pair_terms(batch, why="objective 'cao'")
    ids, k = _objective_ids(batch, num_objectives)
    per_pair = -F.logsigmoid(beta * t.delta_score)
    if weights is None:
        w = torch.full((k,), 1.0 / k, dtype=per_pair.dtype)
    else:
        w = torch.as_tensor(weights, dtype=per_pair.dtype)
        if w.shape != (k,):
            raise ValueError(f"weights must hold one value per objective ({k}); got {tuple(w.shape)}")
    counts = torch.bincount(ids, minlength=k).to(per_pair.dtype)
    # per-example share so that losses.mean() == loss
    scale = w[ids] * batch.batch_size / counts[ids] + synergy_weight
    losses = per_pair * scale
    metrics = preference_metrics(beta * t.chosen_logratios, beta * t.rejected_logratios, t)
    for j in range(k):
        if counts[j] > 0:
            metrics[f"loss/objective_{j}"] = per_pair[ids == j].detach().mean().item()
    return LossOutput(loss=losses.mean(), losses=losses, metrics=metrics)
