"""SeaS: decoupled anomaly alignment of cross-attention maps with anomaly masks (and the normal token with the
rest of the image)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput
from alignkit.vision._common import check_binary, check_maps

PAPER = "SeaS: Few-shot Industrial Anomaly Image Generation with Separation and Sharing Fine-tuning"
ARXIV = "2410.14987"

register_field(
    "cross_attention_maps",
    "cross-attention maps of prompt tokens over image positions (B, K, H, W)",
    computed="the diffusion U-Net's cross-attention layers (caller)",
)


@dataclass
class MaskAlignmentBatch:
    """Cross-attention maps of the K anomaly tokens (B, K, H, W), of the normal token (B, H, W), and the anomaly
    mask (B, H, W)."""

    anomaly_attn: Tensor
    normal_attn: Tensor
    mask: Tensor

    def __post_init__(self) -> None:
        check_maps("anomaly_attn", self.anomaly_attn, 4)
        check_maps("normal_attn", self.normal_attn, 3)
        b, _, h, w = self.anomaly_attn.shape
        if tuple(self.normal_attn.shape) != (b, h, w) or tuple(self.mask.shape) != (b, h, w):
            raise ValueError(
                f"normal_attn and mask must be ({b}, {h}, {w}); got {tuple(self.normal_attn.shape)}, "
                f"{tuple(self.mask.shape)}"
            )
        self.mask = check_binary("mask", self.mask).to(self.anomaly_attn.dtype)


def _example() -> str:
    return (
        "import torch, alignkit as ak\n"
        "from alignkit.vision import MaskAlignmentBatch\n"
        "a = torch.rand(2, 3, 4, 4, requires_grad=True)\n"
        "batch = MaskAlignmentBatch(a, torch.rand(2, 4, 4), (torch.rand(2, 4, 4) > 0.5).float())\n"
        'out = ak.get("seas_alignment")(batch)\n'
        "out.loss.backward()\n"
        "print(out.loss, out.metrics)"
    )


@register_objective(
    name="seas_alignment",
    aliases=("decoupled_anomaly_alignment",),
    paper=PAPER,
    arxiv=ARXIV,
    family="text_to_image",
    batch_type=MaskAlignmentBatch,
    requires=("cross_attention_maps", "region_masks"),
    needs_reference=False,
    aggregation="mean",
    tags=(
        "anomaly-generation",
        "modality:vision",
        "algorithm:pointwise",
        "feedback:demonstration",
        "data:off-policy",
    ),
    verification="reconstruction",
)
def seas_alignment(batch: MaskAlignmentBatch, *, normal_weight: float = 1.0) -> LossOutput:
    """SeaS: Few-shot Industrial Anomaly Image Generation with Separation and Sharing Fine-tuning
    (arXiv:2410.14987): the decoupled anomaly alignment (DA) loss. The mean cross-attention of the anomaly tokens
    is pulled onto the anomaly mask and the normal token's attention onto the rest of the image, so anomaly and
    product are bound to different tokens. (The normal-image alignment loss is the diffusion denoising loss on
    normal images with the normal token: the caller's.)

    Formula:
        A_bar = (1/K) sum_k anomaly_attn[:, k]
        L_DA = mean_{b,p} (A_bar - M)^2 + normal_weight * mean_{b,p} (A_n - (1 - M))^2

    Hyper-parameters:
        normal_weight: 1.0 — weight of the normal-token term (ours; the paper's balance was not read).

    Verification: reconstruction — squared error and the mean over anomaly tokens are recalled, not read from
    the paper or HUST-SLOW/SeaS. No full pipeline is provided here (no diffusion model): this is a function of
    the tensors the method consumes, tested on small synthetic tensors.
    """
    mean_anom = batch.anomaly_attn.mean(1)
    anom = (mean_anom - batch.mask).pow(2).mean((-1, -2))
    norm = (batch.normal_attn - (1 - batch.mask)).pow(2).mean((-1, -2))
    losses = anom + normal_weight * norm
    return LossOutput(
        loss=losses.mean(),
        losses=losses.detach(),
        metrics={"anomaly_term": float(anom.detach().mean()), "normal_term": float(norm.detach().mean())},
    )


seas_alignment.fn.example = _example()
