"""BCO: binary classifier optimisation with a running reward-mean shift (unpaired)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignkit.objectives.unpaired._common import logratios, unpaired_metrics, weighted
from alignkit.registry import register_objective
from alignkit.spec import StateSpec
from alignkit.types import LossOutput, UnpairedBatch


def _update_running_mean(state: dict[str, float], stats: dict[str, float]) -> dict[str, float]:
    """Fold a step's summed rewards (over micro-batches and ranks) into the running mean."""
    count = state["running_count"] + stats.get("count", 0.0)
    if count == 0:
        return dict(state)
    total = state["running_count"] * state["running_mean"] + stats.get("reward_sum", 0.0)
    return {"running_mean": total / count, "running_count": count}


@register_objective(
    name="bco",
    verification="paper-formula",
    paper="Binary Classifier Optimization for Large Language Model Alignment",
    arxiv="2404.04656",
    batch_type=UnpairedBatch,
    state=StateSpec(init={"running_mean": 0.0, "running_count": 0}, update=_update_running_mean),
    tags=("unpaired", "reference", "algorithm:pointwise", "feedback:binary", "data:off-policy"),
)
def bco(
    batch: UnpairedBatch,
    *,
    beta: float = 0.1,
    running_mean: float = 0.0,
    running_count: int = 0,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> LossOutput:
    """Binary Classifier Optimization for Large Language Model Alignment (BCO, arXiv:2404.04656), Eq. 6.

    A logistic classifier with logit r = beta log pi/ref separates desirable from undesirable completions; the
    reward shift delta is the running mean of all rewards seen so far *including this batch* (the paper's
    moving average). The function stays pure: the previous state comes in as ``running_mean`` /
    ``running_count``; the batch's additive statistics go out in ``out.state`` (``reward_sum``, ``count``) and the
    registered ``StateSpec`` folds them in. The trainer does this once per optimiser step, summing over
    micro-batches and DDP ranks (so the state is the same on every rank), and saves it in checkpoints.

    Formula:
        r = beta (log pi(y|x) - log ref(y|x))
        delta = (running_count * running_mean + sum_batch r) / (running_count + B)
        desirable:   L = -log sigma(r - delta)
        undesirable: L = -log sigma(-(r - delta))

    Hyper-parameters:
        beta: 0.1 — reward temperature (TRL's ``BCOConfig`` default, ``trl/experimental/bco/bco_config.py``).
        running_mean: 0.0 — mean of the rewards seen before this batch (ours: no rewards seen yet).
        running_count: 0 — how many rewards that mean covers (ours: none yet).
        desirable_weight: 1.0 — weight of desirable examples (ours: unweighted; TRL's ``BCOConfig`` has none).
        undesirable_weight: 1.0 — weight of undesirable examples (ours, as ``desirable_weight``).
    """
    r = beta * logratios(batch, "bco")
    n = batch.batch_size
    with torch.no_grad():
        delta = (running_count * running_mean + r.detach().sum().item()) / (running_count + n)
    losses = weighted(
        batch, -F.logsigmoid(r - delta), -F.logsigmoid(-(r - delta)), desirable_weight, undesirable_weight
    )
    metrics = unpaired_metrics(batch, r)
    metrics.update(
        {
            "bco/running_mean": float(delta),
            "bco/running_count": float(running_count + n),
            "delta": float(delta),
        }
    )
    stats = {"reward_sum": float(r.detach().sum()), "count": float(n)}
    return LossOutput(loss=losses.mean(), losses=losses, metrics=metrics, state=stats)
