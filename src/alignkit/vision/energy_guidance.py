"""Model guidance with explanations: the Energy loss on attribution maps inside annotated boxes."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput
from alignkit.vision._common import check_binary, check_maps

PAPER = "Studying How to Efficiently and Effectively Guide Models with Explanations"
ARXIV = "2303.11932"

register_field(
    "attributions",
    "an attribution map per image for its target class (B, H, W) (B-cos, GradCAM, IxG ...)",
    computed="the attribution method on the model's forward, with create_graph=True (caller)",
)


@dataclass
class GuidanceBatch:
    """Attribution maps (B, H, W) for the target class and the annotated box masks (B, H, W)."""

    attributions: Tensor
    box_mask: Tensor

    def __post_init__(self) -> None:
        check_maps("attributions", self.attributions, 3)
        if self.box_mask.shape != self.attributions.shape:
            raise ValueError(
                f"box_mask has shape {tuple(self.box_mask.shape)}; attributions has {tuple(self.attributions.shape)}"
            )
        self.box_mask = check_binary("box_mask", self.box_mask).to(self.attributions.dtype)
        if (self.box_mask.sum((-1, -2)) == 0).any():
            raise ValueError("box_mask is empty for some image: every image needs a box")


def _example() -> str:
    return (
        "import torch, alignkit as ak\n"
        "from alignkit.vision import GuidanceBatch\n"
        "a = torch.randn(2, 4, 4, requires_grad=True)\n"
        "m = torch.zeros(2, 4, 4); m[:, :2, :2] = 1\n"
        'out = ak.get("energy_guidance")(GuidanceBatch(a, m))\n'
        "out.loss.backward()\n"
        "print(out.loss, out.metrics)"
    )


@register_objective(
    name="energy_guidance",
    aliases=("energy_loss", "model_guidance"),
    paper=PAPER,
    arxiv=ARXIV,
    family="vision",
    batch_type=GuidanceBatch,
    requires=("attributions", "region_masks"),
    needs_reference=False,
    aggregation="mean",
    tags=(
        "explanations",
        "modality:vision",
        "algorithm:pointwise",
        "feedback:demonstration",
        "data:off-policy",
    ),
    verification="reconstruction",
)
def energy_guidance(batch: GuidanceBatch, *, eps: float = 1e-12) -> LossOutput:
    """Studying How to Efficiently and Effectively Guide Models with Explanations (Energy loss,
    arXiv:2303.11932). Model guidance adds a loss on the model's explanation for the target class; the Energy
    loss asks that the positive attribution lie inside the annotated bounding boxes, without forcing it to cover
    them (unlike a per-pixel loss). Add it to the classification loss with a weight lambda (the caller's).

    Formula:
        A+ = max(A, 0)
        L_energy = 1 - sum_{p in box} A+(p) / sum_p A+(p)     (mean over images)

    Hyper-parameters:
        eps: 1e-12 — added to the denominator (ours, for a map with no positive attribution: the loss is then 1).

    Verification: reconstruction — the formula is the catalogue's recollection of the paper's definition (the
    paper and sukrutrao/Model-Guidance were not read here). Tests: all positive attribution in the box gives 0; uniform attribution with a box covering a fraction f
    gives 1 - f (the paper's definition). No full pipeline is provided here (no B-cos network): this is a
    function of the tensors the method consumes, tested on small synthetic tensors.
    """
    pos = batch.attributions.clamp(min=0)
    inside = (pos * batch.box_mask).sum((-1, -2))
    total = pos.sum((-1, -2))
    losses = 1 - inside / (total + eps)
    return LossOutput(
        loss=losses.mean(),
        losses=losses.detach(),
        metrics={"energy_in_box": float((1 - losses.detach()).mean())},
    )


energy_guidance.fn.example = _example()
