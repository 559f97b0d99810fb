"""CALF: cross-modal fine-tuning for time series — feature regularisation and output consistency losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.representation._batches import check_float, example
from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

DISTANCES = ("smooth_l1", "l1", "mse")
register_field(
    "branch_outputs",
    "the temporal (target) and textual (source) branches' per-layer features and outputs, plus the target (BranchBatch)",
)


@dataclass
class BranchBatch:
    """CALF's two branches on the same input: ``time_features`` / ``text_features`` (L, B, ...) — the
    intermediate features of L layers; ``time_output`` / ``text_output`` (B, ...) — the branches' forecasts;
    ``target`` (B, ...) — the true future values."""

    time_features: Tensor
    text_features: Tensor
    time_output: Tensor
    text_output: Tensor
    target: Tensor

    def __post_init__(self) -> None:
        for name in ("time_features", "text_features", "time_output", "text_output", "target"):
            setattr(self, name, check_float("BranchBatch", name, getattr(self, name)))
        if self.time_features.shape != self.text_features.shape:
            raise ValueError("BranchBatch.text_features must have the shape of time_features")
        if not (self.time_output.shape == self.text_output.shape == self.target.shape):
            raise ValueError("BranchBatch.time_output, text_output and target must share one shape")


def _dist(kind: str, x: Tensor, y: Tensor) -> Tensor:
    if kind == "smooth_l1":
        return F.smooth_l1_loss(x, y)
    if kind == "l1":
        return F.l1_loss(x, y)
    return F.mse_loss(x, y)


@register_objective(
    name="calf",
    aliases=("cross_modal_fine_tuning",),
    paper="CALF: Aligning LLMs for Time Series Forecasting via Cross-modal Fine-Tuning",
    arxiv="2403.07300",
    family="representation",
    needs_reference=False,
    batch_type=BranchBatch,
    requires=("branch_outputs",),
    tags=("cross-modal-alignment", "time-series", "modality:cross-modal", "modality:text"),
    verification="reconstruction",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation.calf import BranchBatch
batch = BranchBatch(time_features=torch.randn(3, 4, 8, requires_grad=True), text_features=torch.randn(3, 4, 8),
                    time_output=torch.randn(4, 6, requires_grad=True), text_output=torch.randn(4, 6), target=torch.randn(4, 6))
out = ak.get("calf")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def calf(
    batch: BranchBatch,
    *,
    task_weight: float = 1.0,
    feature_weight: float = 0.01,
    output_weight: float = 1.0,
    feature_distance: str = "smooth_l1",
    output_distance: str = "smooth_l1",
    task_distance: str = "mse",
) -> LossOutput:
    """CALF: Aligning LLMs for Time Series Forecasting via Cross-modal Fine-Tuning (arXiv:2403.07300).

    The temporal branch is trained on the forecast and pulled towards the textual branch at every layer
    (feature regularisation) and at the output (output consistency). Detach the textual branch when it should
    not move (the paper's source branch is frozen apart from LoRA).

    Formula:
        L = task_weight * d_task(time_output, target)
            + feature_weight * sum_l phi(time_features[l], text_features[l])
            + output_weight * psi(time_output, text_output)

    Hyper-parameters:
        task_weight: 1.0 — weight of the supervised loss (ours: unit weight).
        feature_weight: 0.01 — gamma (recalled from the official scripts, Hank0626/CALF ``--feature_w 0.01``;
            not re-checked).
        output_weight: 1.0 — delta (recalled from the official scripts, ``--output_w 1.0``; not re-checked).
        feature_distance: "smooth_l1" — phi (recalled from the official code).
        output_distance: "smooth_l1" — psi (recalled from the official code; not re-checked).
        task_distance: "mse" — the forecasting loss (ours: the usual one; not checked against the official
            code).

    Reconstruction: the three-term structure is the paper's; distances and weights are recalled. Identical
    branches give zero regularisers.
    """
    for name, kind in (
        ("feature_distance", feature_distance),
        ("output_distance", output_distance),
        ("task_distance", task_distance),
    ):
        if kind not in DISTANCES:
            raise ValueError(f"{name} must be one of {DISTANCES}; got {kind!r}")
    task = _dist(task_distance, batch.time_output, batch.target)
    feat = sum(
        _dist(feature_distance, a, b) for a, b in zip(batch.time_features, batch.text_features, strict=True)
    )
    out = _dist(output_distance, batch.time_output, batch.text_output)
    loss = task_weight * task + feature_weight * feat + output_weight * out
    return LossOutput(
        loss=loss,
        losses=loss.reshape(1),
        metrics={"calf/task": task.item(), "calf/feature": feat.item(), "calf/output": out.item()},
    )
