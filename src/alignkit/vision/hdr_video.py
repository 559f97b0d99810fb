"""LAN-HDR's training losses: frame reconstruction on mu-law tonemapped HDR frames and a temporal loss."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput
from alignkit.vision._common import check_maps

PAPER = "LAN-HDR: Luminance-based Alignment Network for High Dynamic Range Video Reconstruction"
ARXIV = "2308.11116"

register_field("video_frames", "predicted and target frame sequences (B, T, C, H, W)", column="frames")


def mu_law(x: Tensor, mu: float = 5000.0) -> Tensor:
    """T(H) = log(1 + mu H) / log(1 + mu) (HDR values in [0, 1])."""
    return torch.log1p(mu * x) / math.log1p(mu)


@dataclass
class VideoBatch:
    """Predicted HDR frames and targets (B, T, C, H, W), linear values in [0, 1]."""

    pred: Tensor
    target: Tensor

    def __post_init__(self) -> None:
        check_maps("pred", self.pred, 5)
        if self.target.shape != self.pred.shape:
            raise ValueError(
                f"target has shape {tuple(self.target.shape)}; pred has {tuple(self.pred.shape)}"
            )
        if (self.pred.detach() < 0).any() or (self.target < 0).any():
            raise ValueError("pred and target must be non-negative linear HDR values")


def _example() -> str:
    return (
        "import torch, alignkit as ak\n"
        "from alignkit.vision import VideoBatch\n"
        "p = torch.rand(1, 3, 3, 4, 4, requires_grad=True)\n"
        'out = ak.get("lan_hdr")(VideoBatch(p, torch.rand(1, 3, 3, 4, 4)))\n'
        "out.loss.backward()\n"
        "print(out.loss, out.metrics)"
    )


@register_objective(
    name="lan_hdr",
    aliases=("hdr_temporal_loss",),
    paper=PAPER,
    arxiv=ARXIV,
    family="vision",
    batch_type=VideoBatch,
    requires=("video_frames",),
    needs_reference=False,
    aggregation="mean",
    tags=("hdr", "modality:video", "algorithm:pointwise", "feedback:demonstration", "data:off-policy"),
    verification="reconstruction",
)
def lan_hdr(batch: VideoBatch, *, mu: float = 5000.0, temporal_weight: float = 1.0) -> LossOutput:
    """LAN-HDR: Luminance-based Alignment Network for High Dynamic Range Video Reconstruction
    (arXiv:2308.11116): its training losses — frame reconstruction on tonemapped frames and, to reduce
    flickering, a temporal loss on the change between consecutive frames.

    Formula:
        T(H) = log(1 + mu H) / log(1 + mu)
        L_rec  = mean |T(H_hat_t) - T(H_t)|
        L_temp = mean |(T(H_hat_t) - T(H_hat_{t-1})) - (T(H_t) - T(H_{t-1}))|
        L = L_rec + temporal_weight * L_temp

    Hyper-parameters:
        mu: 5000.0 — mu-law compression (the usual HDR value, as in Kalantari & Ramamoorthi's paper; recalled).
        temporal_weight: 1.0 — weight of the temporal loss (ours; the paper's value was not read).

    Verification: reconstruction — the abstract states a temporal loss besides frame reconstruction losses; the
    mu-law form and the difference-of-differences temporal term are recalled, not read, and the perceptual loss
    is omitted. The alignment network itself is out of scope. No full pipeline is provided here (no video
    network): this is a function of the tensors the method consumes, tested on small synthetic tensors.
    """
    tp, tt = mu_law(batch.pred, mu), mu_law(batch.target, mu)
    rec = (tp - tt).abs().mean((1, 2, 3, 4))
    if batch.pred.shape[1] > 1:
        temp = ((tp[:, 1:] - tp[:, :-1]) - (tt[:, 1:] - tt[:, :-1])).abs().mean((1, 2, 3, 4))
    else:
        temp = torch.zeros_like(rec)
    losses = rec + temporal_weight * temp
    return LossOutput(
        loss=losses.mean(),
        losses=losses.detach(),
        metrics={"loss_rec": float(rec.detach().mean()), "loss_temporal": float(temp.detach().mean())},
    )


lan_hdr.fn.example = _example()
