"""F-CLIPScore: CLIPScore plus the aggregated negative token attributions (dense misalignment from CLIP)."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.registry import register

PAPER = "Extract Free Dense Misalignment from CLIP"
ARXIV = "2412.18404"


@register(
    name="f_clipscore",
    kind="metric",
    family="multimodal",
    paper=PAPER,
    arxiv=ARXIV,
    aliases=("clip4dm",),
    tags=("misalignment", "metric", "modality:vision"),
    verification="reconstruction",
)
def f_clipscore(
    clipscore: Tensor, attributions: Tensor, token_mask: Tensor, *, lam: float = 1.0, threshold: float = 0.0
) -> dict[str, Tensor]:
    """Extract Free Dense Misalignment from CLIP (CLIP4DM; arXiv:2412.18404, id unconfirmed): text tokens whose
    gradient attribution to the image-text score is negative are flagged as misaligned, and F-CLIPScore adds
    their aggregated (negative) attribution to the global CLIPScore.

    Formula:
        misaligned_j = attr_j < threshold            (on real tokens, token_mask = 1)
        F-CLIPScore = CLIPScore + lam * sum_j token_mask_j * min(0, attr_j)

    Hyper-parameters:
        lam: 1.0 — weight of the attribution term (ours; the paper's value was not read).
        threshold: 0.0 — attribution below which a token is flagged (the abstract: "negative gradient").

    Verification: reconstruction — the aggregation (a sum of negative attributions) is recalled with low
    confidence; the revamped attribution itself (grad x attention through CLIP's text layers) needs a CLIP model
    and is not implemented. Tensors: clipscore (B,), attributions and token_mask (B, T). No full pipeline is
    provided here (no CLIP model): this is a function of the tensors the method consumes, tested on small
    synthetic tensors.
    """
    if clipscore.dim() != 1 or attributions.dim() != 2 or attributions.shape[0] != clipscore.shape[0]:
        raise ValueError(
            f"clipscore must be (B,) and attributions (B, T); got {tuple(clipscore.shape)}, {tuple(attributions.shape)}"
        )
    if token_mask.shape != attributions.shape:
        raise ValueError(f"token_mask must be {tuple(attributions.shape)}; got {tuple(token_mask.shape)}")
    m = token_mask.bool()
    neg = torch.where(m, attributions.clamp(max=0.0), torch.zeros_like(attributions))
    return {
        "f_clipscore": clipscore + lam * neg.sum(-1),
        "misaligned": (attributions < threshold) & m,
    }
