"""Grounding-aware token pruning: keep the original position IDs of the tokens that survive pruning."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.registry import register

PAPER = "Grounding-Aware Token Pruning: Recovering from Drastic Performance Drops in Visual Grounding Caused by Pruning"
ARXIV = "2506.21873"
MODES = ("original", "contiguous")


@register(
    name="grounding_aware_position_ids",
    kind="procedure",
    family="multimodal",
    paper=PAPER,
    arxiv=ARXIV,
    aliases=("gap_position_ids",),
    tags=("token-pruning", "inference", "modality:vision"),
    verification="reconstruction",
)
def pruned_position_ids(keep_mask: Tensor, *, mode: str = "original") -> list[Tensor]:
    """Grounding-Aware Token Pruning: Recovering from Drastic Performance Drops in Visual Grounding Caused by
    Pruning (GAP, arXiv:2506.21873). Pruning visual tokens of a multimodal LLM and re-indexing the shorter
    sequence contiguously shifts the position IDs the model reads spatial layout from; GAP keeps every kept
    token's original position ID. No training.

    Formula:
        original:   pos_b = nonzero(keep_mask[b])           (the kept tokens' indices in the unpruned sequence)
        contiguous: pos_b = 0, 1, ..., |keep_mask[b]| - 1   (the re-indexing that breaks grounding)

    Hyper-parameters:
        mode: "original" — "original" (GAP, the paper's method) or "contiguous" (the naive baseline).

    Returns one LongTensor of position IDs per row (rows can keep different numbers of tokens). Source: the
    abstract and a secondary write-up ("keeps the original position IDs intact"); this rule is the whole method
    (verification: reconstruction — the paper's handling of text-token IDs was not read).
    No full pipeline is provided here (no multimodal LLM): this is a function of the tensors the method
    consumes, tested on small synthetic tensors (and a tiny RoPE attention).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if keep_mask.dim() != 2:
        raise ValueError(f"keep_mask must be (B, T); got {tuple(keep_mask.shape)}")
    keep = keep_mask.bool()
    out = []
    for row in keep:
        idx = row.nonzero().flatten()
        out.append(idx if mode == "original" else torch.arange(len(idx)))
    return out


def rope(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding of x (T, D) (D even) at the given positions (T,)."""
    d = x.shape[-1]
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = positions.double()[:, None] * inv[None]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)
