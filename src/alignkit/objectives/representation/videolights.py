"""VideoLights: clip-text alignment and adaptive hard positive/negative saliency losses (highlight detection)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.representation._batches import check_float, example
from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

PAPER = "VideoLights: Feature Refinement and Cross-Task Alignment Transformer for Joint Video Highlight Detection and Moment Retrieval"
TAGS = ("cross-modal-alignment", "saliency", "modality:video", "modality:text", "modality:cross-modal")
register_field(
    "video_text_features",
    "text token features (B, L, D) with mask and video clip features (B, C, D) with mask",
)
register_field(
    "saliency", "ground-truth per-clip saliency (B, C) and, for the hard losses, predicted saliency (B, C)"
)


@dataclass
class SaliencyBatch:
    """``text`` (B, L, D) token features, ``text_mask`` (B, L); ``clips`` (B, C, D) clip features, ``clip_mask``
    (B, C); ``saliency`` (B, C) ground-truth saliency; ``pred_saliency`` (B, C) the model's saliency scores
    (needed by the hard losses only)."""

    text: Tensor
    text_mask: Tensor
    clips: Tensor
    clip_mask: Tensor
    saliency: Tensor
    pred_saliency: Tensor | None = None

    def __post_init__(self) -> None:
        self.text = check_float("SaliencyBatch", "text", self.text, dims=3)
        self.clips = check_float("SaliencyBatch", "clips", self.clips, dims=3)
        b, c, d = self.clips.shape
        if self.text.shape[0] != b or self.text.shape[2] != d:
            raise ValueError(f"SaliencyBatch.text has shape {tuple(self.text.shape)}; expected ({b}, L, {d})")
        for name, shape in (("text_mask", self.text.shape[:2]), ("clip_mask", (b, c))):
            m = getattr(self, name)
            if tuple(m.shape) != tuple(shape):
                raise ValueError(f"SaliencyBatch.{name} has shape {tuple(m.shape)}; expected {tuple(shape)}")
            if (m.sum(1) == 0).any():
                raise ValueError(f"SaliencyBatch.{name} selects nothing in some row")
            setattr(self, name, m.bool())
        self.saliency = check_float("SaliencyBatch", "saliency", self.saliency, dims=2)
        if tuple(self.saliency.shape) != (b, c):
            raise ValueError(
                f"SaliencyBatch.saliency has shape {tuple(self.saliency.shape)}; expected ({b}, {c})"
            )
        if self.pred_saliency is not None:
            self.pred_saliency = check_float("SaliencyBatch", "pred_saliency", self.pred_saliency, dims=2)
            if self.pred_saliency.shape != self.saliency.shape:
                raise ValueError("SaliencyBatch.pred_saliency must have the shape of saliency")


_EXAMPLE = """
import torch, alignkit as ak
from alignkit.objectives.representation.videolights import SaliencyBatch
batch = SaliencyBatch(text=torch.randn(2, 5, 8, requires_grad=True), text_mask=torch.ones(2, 5), clips=torch.randn(2, 6, 8),
                      clip_mask=torch.ones(2, 6), saliency=torch.rand(2, 6), pred_saliency=torch.randn(2, 6, requires_grad=True))
out = ak.get("{name}")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""


def _minmax(x: Tensor, mask: Tensor) -> Tensor:
    lo = x.masked_fill(~mask, torch.inf).amin(1, keepdim=True)
    hi = x.masked_fill(~mask, -torch.inf).amax(1, keepdim=True)
    return torch.where(mask, (x - lo) / (hi - lo).clamp_min(1e-8), torch.zeros_like(x))


@register_objective(
    name="videolights_alignment",
    paper=PAPER,
    arxiv="2412.01558",
    family="representation",
    needs_reference=False,
    batch_type=SaliencyBatch,
    requires=("video_text_features", "saliency"),
    tags=TAGS,
    verification="reconstruction",
)
@example(_EXAMPLE.format(name="videolights_alignment"))
def videolights_alignment(batch: SaliencyBatch) -> LossOutput:
    """VideoLights (clip-text alignment loss, arXiv:2412.01558): the profile of clip-to-query similarities
    over a video should have the shape of the ground-truth saliency.

    Formula:
        q = mean over valid tokens of text,  s_c = cos(q, clips_c),  s = minmax(s) over valid clips
        L = mean_b (1 - cos(s_b, saliency_b))        (cosine over the clip axis, valid clips only)

    Hyper-parameters:
        (none)

    Reconstruction from the project catalogue's reading of the official code (``SetCriterion.loss_align_vid_txt``
    in a copy of dpaul06/VideoLights); not re-checked line by line. Zero when the similarities are proportional
    to the saliency after min-max scaling.
    """
    m = batch.text_mask.unsqueeze(-1).to(batch.text.dtype)
    q = (batch.text * m).sum(1) / m.sum(1)
    s = F.cosine_similarity(q.unsqueeze(1), batch.clips, dim=-1)
    s = _minmax(s, batch.clip_mask)
    gt = batch.saliency * batch.clip_mask
    losses = 1 - F.cosine_similarity(s, gt, dim=1, eps=1e-8)
    return LossOutput(loss=losses.mean(), losses=losses, metrics={"videolights/align": losses.mean().item()})


@register_objective(
    name="videolights_hard_saliency",
    paper=PAPER,
    arxiv="2412.01558",
    family="representation",
    needs_reference=False,
    batch_type=SaliencyBatch,
    requires=("saliency",),
    tags=TAGS,
    verification="reconstruction",
)
@example(_EXAMPLE.format(name="videolights_hard_saliency"))
def videolights_hard_saliency(
    batch: SaliencyBatch, *, epoch: int = 0, coef: float = 10.0, threshold: float = 0.0
) -> LossOutput:
    """VideoLights (adaptive hard positive and negative saliency losses, arXiv:2412.01558): a squared error
    on the predicted saliency of positive clips and of negative clips, weighted more as training goes on.

    Formula:
        pos = saliency > threshold (valid clips),  neg = not pos (valid clips)
        L_hpos = (epoch + 1) * coef * MSE(saliency * pos, pred * pos)
        L_hneg = (epoch + 1) * coef * MSE(saliency * neg, pred * neg)
        L = L_hpos + L_hneg

    Hyper-parameters:
        epoch: 0 — the current epoch (0-based; ours: the first epoch); the penalty grows linearly with epoch + 1
            (pass it each epoch).
        coef: 10.0 — the catalogue's reading of the official code's coefficient.
        threshold: 0.0 — saliency above it marks a positive clip (ours).

    Reconstruction as for ``videolights_alignment``. Zero when the predictions equal the targets.
    """
    if batch.pred_saliency is None:
        raise ValueError("videolights_hard_saliency needs SaliencyBatch.pred_saliency")
    valid = batch.clip_mask
    pos = (batch.saliency > threshold) & valid
    neg = ~pos & valid
    scale = (epoch + 1) * coef
    err = (batch.pred_saliency - batch.saliency).square()
    l_pos = (err * pos).sum(1) / valid.sum(1)
    l_neg = (err * neg).sum(1) / valid.sum(1)
    losses = scale * (l_pos + l_neg)
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={
            "videolights/hpos": (scale * l_pos).mean().item(),
            "videolights/hneg": (scale * l_neg).mean().item(),
        },
    )
