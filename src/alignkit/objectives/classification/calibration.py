"""Post-hoc calibration: the correctness-aware (CA) loss for a calibrator, and expected calibration error."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives.classification._batch import ClassificationBatch
from alignkit.registry import register, register_objective
from alignkit.types import LossOutput

PAPER = "Optimizing Calibration by Gaining Aware of Prediction Correctness"
KINDS = ("l1", "l2", "bce")


def correctness_aware_terms(calibrated_logits: Tensor, correct: Tensor, kind: str = "l2") -> Tensor:
    """Per-example CA loss (B,): confidence s = max softmax of the calibrated logits, c = 1[base prediction right]."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    s = torch.softmax(calibrated_logits, dim=-1).amax(-1)
    c = correct.to(s.dtype)
    if kind == "l1":
        return c * (1 - s) + (1 - c) * s
    if kind == "l2":
        return (c - s) ** 2
    eps = torch.finfo(s.dtype).eps
    return -(c * torch.log(s.clamp_min(eps)) + (1 - c) * torch.log((1 - s).clamp_min(eps)))


@register_objective(
    name="correctness_aware_calibration",
    aliases=("ca_loss",),
    paper=PAPER,
    arxiv="2404.13016",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_logits", "class_targets"),
    optional={
        "class_base_logits": "correctness is read from argmax(logits) (right for accuracy-preserving calibrators)"
    },
    tags=("modality:vision", "modality:tabular", "classification", "calibration", "post-hoc"),
    verification="reconstruction",
)
def correctness_aware_calibration(batch: ClassificationBatch, *, kind: str = "l2") -> LossOutput:
    """Optimizing Calibration by Gaining Aware of Prediction Correctness (Liu, Wang, Zou, Zou, Zheng;
    arXiv:2404.13016).

    A post-hoc calibrator (e.g. a per-sample temperature predicted from the logits of transformed views) is
    trained so that confidence goes *up* on samples the frozen classifier gets right and *down* on those it gets
    wrong. Cross-entropy instead always raises the true class's score, which on narrow misclassifications raises
    the confidence of the wrong prediction.

    Formula:
        c_i = 1[argmax base_logits_i = y_i]           (correctness of the frozen classifier)
        s_i = max_k softmax(logits_i)_k               (confidence after calibration; logits = calibrated logits)
        l1  : L_i = c_i (1 - s_i) + (1 - c_i) s_i = |c_i - s_i|
        l2  : L_i = (c_i - s_i)^2
        bce : L_i = -[c_i log s_i + (1 - c_i) log(1 - s_i)]
        L = mean_i L_i

    Hyper-parameters:
        kind: "l2" — reconstruction: the abstract states the aim (raise confidence on correct, lower it on wrong
            samples) but not the exact form. "l2" (a Brier score on correctness) and "bce" are proper scoring rules
            for "confidence = probability of being right", so their minimiser is calibrated; "l1", the literal
            reading of the aim, is not proper (it pushes confidences to 0 or 1) and is kept for comparison. The
            transformed-view features the paper feeds its calibrator are the caller's.

    Inputs: calibrated ``logits`` (B, C), integer ``targets``; ``base_logits`` (B, C) of the frozen classifier
    (without them, correctness is read from ``logits``: temperature scaling does not change the argmax).
    """
    logits = batch.need("logits")
    base = batch.base_logits if batch.base_logits is not None else logits
    correct = base.argmax(-1) == batch.class_ids()
    losses = correctness_aware_terms(logits, correct, kind)
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={
            "accuracy": float(correct.float().mean()),
            "confidence": float(torch.softmax(logits.detach(), -1).amax(-1).mean()),
        },
    )


def expected_calibration_error_fn(probs: Tensor, targets: Tensor, *, n_bins: int = 15) -> float:
    """Expected calibration error (Guo et al. 2017): bins of equal width over the top-label confidence.

    Formula:
        ECE = sum_b (|B_b| / n) * |acc(B_b) - conf(B_b)|,   B_b = {i : conf_i in ((b-1)/M, b/M]}, M = n_bins

    Hyper-parameters:
        n_bins: 15 — Guo et al. 2017 (arXiv:1706.04599) and torchmetrics' default.
    """
    if probs.dim() != 2:
        raise ValueError(f"probs must be (N, C); got {tuple(probs.shape)}")
    if targets.shape != probs.shape[:1]:
        raise ValueError(f"targets must be (N,) = ({probs.shape[0]},); got {tuple(targets.shape)}")
    conf, pred = probs.max(-1)
    acc = (pred == targets).to(probs.dtype)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=probs.dtype)
    ece = torch.zeros((), dtype=probs.dtype)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece = ece + inside.to(probs.dtype).mean() * (acc[inside].mean() - conf[inside].mean()).abs()
    return float(ece)


expected_calibration_error = register(
    name="expected_calibration_error",
    aliases=("ece",),
    kind="metric",
    paper="On Calibration of Modern Neural Networks",
    arxiv="1706.04599",
    family="classification",
    tags=("modality:vision", "modality:tabular", "calibration"),
    verification="paper-formula",
)(expected_calibration_error_fn)
