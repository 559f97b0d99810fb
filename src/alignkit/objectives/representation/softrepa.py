"""SoftREPA: contrastive text-image alignment in a diffusion model through its denoising errors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.representation._batches import check_float, check_positive, example
from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

register_field(
    "cross_denoising",
    "the denoiser's noise prediction for image i under caption j, (B, B, ...), and the true noise (B, ...) (DenoisingBatch)",
)


@dataclass
class DenoisingBatch:
    """``eps_pred`` (B, B, ...): eps_theta(x_t^(i), t, [s; c_j]) — the noise predicted for noised image i under
    caption j (same noise and t for every j); ``eps`` (B, ...): the noise added to image i."""

    eps_pred: Tensor
    eps: Tensor

    def __post_init__(self) -> None:
        self.eps_pred = check_float("DenoisingBatch", "eps_pred", self.eps_pred)
        self.eps = check_float("DenoisingBatch", "eps", self.eps)
        b = self.eps.shape[0]
        if tuple(self.eps_pred.shape) != (b, b, *self.eps.shape[1:]):
            raise ValueError(
                f"DenoisingBatch.eps_pred has shape {tuple(self.eps_pred.shape)}; expected {(b, b, *self.eps.shape[1:])}"
            )


@register_objective(
    name="softrepa",
    aliases=("denoising_contrastive",),
    paper="Aligning Text to Image in Diffusion Models is Easier Than You Think",
    arxiv="2503.08250",
    family="representation",
    needs_reference=False,
    batch_type=DenoisingBatch,
    requires=("cross_denoising",),
    tags=("contrastive", "diffusion", "modality:image", "modality:text", "modality:cross-modal"),
    verification="reconstruction",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation.softrepa import DenoisingBatch
batch = DenoisingBatch(eps_pred=torch.randn(4, 4, 2, 3, 3, requires_grad=True), eps=torch.randn(4, 2, 3, 3))
out = ak.get("softrepa")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def softrepa(batch: DenoisingBatch, *, temperature: float = 1.0, symmetric: bool = False) -> LossOutput:
    """Aligning Text to Image in Diffusion Models is Easier Than You Think (SoftREPA, arXiv:2503.08250).

    The denoising error of image i under caption j is a (negative) logit: the matched caption should denoise
    its image best. Only soft text tokens are trained in the paper; the loss is the same for any parameters.

    Formula:
        l_ij = -mean(||eps_i - eps_pred[i, j]||^2) / tau
        L = mean_i CE(softmax_j l_ij, i)          (symmetric: averaged with CE(softmax_i l_ij, j))

    Hyper-parameters:
        temperature: 1.0 — ours (the paper's value was not available to us).
        symmetric: False — the image -> caption direction only (ours).

    Reconstruction from the abstract (contrastive loss over positive and negative pairs through the denoiser);
    the mean-squared error as logit is our reading. All-equal errors give log B.
    """
    check_positive("temperature", temperature)
    b = batch.eps.shape[0]
    err = (batch.eps_pred - batch.eps.unsqueeze(1)).square().reshape(b, b, -1).mean(-1)
    logits = -err / temperature
    target = torch.arange(b, device=logits.device)
    losses = F.cross_entropy(logits, target, reduction="none")
    if symmetric:
        losses = (losses + F.cross_entropy(logits.T, target, reduction="none")) / 2
    acc = (logits.argmax(1) == target).float().mean().item()
    return LossOutput(loss=losses.mean(), losses=losses, metrics={"softrepa/accuracy": acc})
