"""Segment-decomposed preference score for long inputs (LongAlign's segment encoding and decomposed preference,
applied to sequences): a long input is encoded segment by segment, and the part of the score that every input
shares is down-weighted."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.registry import register

PAPER = "Improving Long-Text Alignment for Text-to-Image Diffusion Models"


def segment_mean_embedding(segment_embeddings: Tensor, segment_batch_ids: Tensor, batch_size: int) -> Tensor:
    """(B, D): per example, the mean of its L2-normalised segment embeddings (LongAlign's segment encoding —
    each segment fits the encoder's window; the mean merges them), then L2-normalised."""
    if segment_embeddings.dim() != 2 or segment_batch_ids.shape != (segment_embeddings.shape[0],):
        raise ValueError(
            "segment_embeddings must be (S, D) and segment_batch_ids (S,); got "
            f"{tuple(segment_embeddings.shape)}, {tuple(segment_batch_ids.shape)}"
        )
    ids = segment_batch_ids.long()
    if ids.min() < 0 or ids.max() >= batch_size:
        raise ValueError(f"segment_batch_ids must lie in [0, {batch_size}); got {ids.min()}..{ids.max()}")
    counts = torch.bincount(ids, minlength=batch_size)
    if (counts == 0).any():
        raise ValueError(
            f"segment_batch_ids gives no segment to example(s) {(counts == 0).nonzero().flatten().tolist()}"
        )
    e = F.normalize(segment_embeddings, dim=-1)
    sums = torch.zeros(batch_size, e.shape[-1], dtype=e.dtype).index_add(0, ids, e)
    return F.normalize(sums / counts.unsqueeze(-1).to(e.dtype), dim=-1)


@register(
    name="segment_decomposed_score",
    kind="metric",
    family="preference",
    paper=PAPER,
    arxiv="2410.11817",
    tags=("reward", "long-context", "algorithm:pointwise", "feedback:reward-model", "data:on-policy"),
)
def segment_decomposed_score(
    input_embeddings: Tensor,
    output_embeddings: Tensor,
    *,
    w: float = 0.3,
    mean_direction: Tensor | None = None,
) -> Tensor:
    """Improving Long-Text Alignment for Text-to-Image Diffusion Models (LongAlign, arXiv:2410.11817): the
    decomposed preference score of outputs against (segment-encoded) long inputs.

    A CLIP-style score <e_in, e_out> has a part that does not depend on which input is given — its component
    along the mean input direction e_bar — and fine-tuning on the raw score overfits to it. The decomposed
    score keeps the input-specific part and weights the shared part by w.

    Formula:
        e_in = segment_mean_embedding(...) (unit),  e_out = e_out / ||e_out||,  e_bar = normalize(mean_B e_in)
        s' = <e_in - (1 - w) <e_in, e_bar> e_bar, e_out>
           = <e_in - <e_in, e_bar> e_bar, e_out> + w <e_in, e_bar> <e_bar, e_out>
        (w = 1: the plain cosine score)

    Hyper-parameters:
        w: 0.3 — weight of the input-independent component (official code's ``REWEIGHT`` default).
        mean_direction: None — e_bar; None = the normalised batch mean of ``input_embeddings``.

    ``input_embeddings`` (B, D) — use :func:`segment_mean_embedding` for long inputs — carry no gradient (as in
    the official code, only the output side is trained); ``output_embeddings`` (B, D) do. To train on pairs,
    score chosen and rejected outputs and use them as a ``RewardBatch`` with the ``bradley_terry`` objective
    (or as rewards for ``task_reward``). "Applied to sequences": for a language model the inputs are long
    prompts split into segments and the outputs are response embeddings (e.g. mean-pooled hidden states). Source:
    official code luping-liu/LongAlign (``loss.py``: ``dense_score``, the ``do_ortho`` branch) as summarised in
    the project catalogue.
    """
    if input_embeddings.shape != output_embeddings.shape or input_embeddings.dim() != 2:
        raise ValueError(
            "input_embeddings and output_embeddings must both be (B, D); got "
            f"{tuple(input_embeddings.shape)}, {tuple(output_embeddings.shape)}"
        )
    e_in = F.normalize(input_embeddings.detach(), dim=-1)
    e_out = F.normalize(output_embeddings, dim=-1)
    bar = F.normalize(e_in.mean(0) if mean_direction is None else mean_direction.detach(), dim=-1)
    proj = (e_in @ bar).unsqueeze(-1) * bar
    return ((e_in - (1 - w) * proj) * e_out).sum(-1)
