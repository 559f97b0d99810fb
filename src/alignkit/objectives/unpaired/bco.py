"""BCO: binary classifier optimisation with a running reward-mean shift (unpaired)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignkit.objectives.unpaired._common import logratios, unpaired_metrics, weighted
from alignkit.registry import register_objective
from alignkit.types import LossOutput, UnpairedBatch


@register_objective(
    name="bco",
    paper="Binary Classifier Optimization for Large Language Model Alignment",
    arxiv="2404.04656",
    batch_type=UnpairedBatch,
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
    moving average). The function stays pure: pass the previous state in, read the new one from
    ``out.metrics["bco/running_mean"]`` and ``["bco/running_count"]`` (the trainer does this).

    Formula:
        r = beta (log pi(y|x) - log ref(y|x))
        delta = (running_count * running_mean + sum_batch r) / (running_count + B)
        desirable:   L = -log sigma(r - delta)
        undesirable: L = -log sigma(-(r - delta))

    Hyper-parameters:
        beta: 0.1 — reward temperature.
        running_mean: 0.0 — mean of the rewards seen before this batch.
        running_count: 0 — how many rewards that mean covers.
        desirable_weight: 1.0 — weight of desirable examples.
        undesirable_weight: 1.0 — weight of undesirable examples.
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
    return LossOutput(loss=losses.mean(), losses=losses, metrics=metrics)
