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
    each segment fits the encoder's window; the mean merges them). The mean is NOT renormalised: with several
    segments its norm is below 1, exactly as in the official ``dense_score`` (``loss.py``:
    ``text_embs_pick_[i] = text_embs_pick[batch_ids == i].mean(dim=0)`` after normalising each segment)."""
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
    sums = torch.zeros(batch_size, e.shape[-1], dtype=e.dtype, device=e.device).index_add(0, ids, e)
    return sums / counts.unsqueeze(-1).to(e.dtype)


@register(
    name="segment_decomposed_score",
    kind="metric",
    family="preference",
    paper=PAPER,
    arxiv="2410.11817",
    tags=("reward", "long-context", "algorithm:pointwise", "feedback:reward-model", "data:on-policy"),
    verification="official-code-parity",
)
def segment_decomposed_score(
    input_embeddings: Tensor,
    output_embeddings: Tensor,
    *,
    w: float = 0.3,
    segment_batch_ids: Tensor | None = None,
    mean_direction: Tensor | None = None,
) -> Tensor:
    """Improving Long-Text Alignment for Text-to-Image Diffusion Models (LongAlign, arXiv:2410.11817): the
    decomposed preference score of outputs against (segment-encoded) long inputs.

    A CLIP-style score <e_in, e_out> has a part that does not depend on which input is given — its component
    along the mean input direction e_bar — and fine-tuning on the raw score overfits to it. The decomposed
    score keeps the input-specific part and weights the shared part by w.

    Formula:
        e_in,b  = mean_{segments s of example b} x_s / ||x_s||      (not renormalised; ||e_in,b|| <= 1)
        e_out   = e_out / ||e_out||,   e_bar = normalize(mean_B e_in)
        s'_b    = <e_in,b - (1 - w) <e_in,b, e_bar> e_bar, e_out,b>
                = <e_in,b - <e_in,b, e_bar> e_bar, e_out,b> + w <e_in,b, e_bar> <e_bar, e_out,b>
        (w = 1: the plain score <e_in, e_out>; the cosine when each example has one segment)

    Hyper-parameters:
        w: 0.3 — weight of the input-independent component (official ``loss.py``: ``REWEIGHT`` env default 0.3).
        segment_batch_ids: None — (S,) example index of each row of ``input_embeddings`` when those rows are
            segments of long inputs (official ``batch_ids``); None = one segment per example (S = B).
        mean_direction: None — e_bar; None = the normalised batch mean of the e_in (official ``ortho_tg``;
            pass the mean gathered over all processes to match multi-GPU runs).

    ``input_embeddings`` (S, D) raw segment embeddings carry no gradient (as in the official code, only the
    output side is trained); ``output_embeddings`` (B, D) do. To train on pairs, score chosen and rejected
    outputs and use them as a ``RewardBatch`` with the ``bradley_terry`` objective (or as rewards for
    ``task_reward``). "Applied to sequences": for a language model the inputs are long prompts split into
    segments and the outputs are response embeddings (e.g. mean-pooled hidden states). Source: official code
    luping-liu/LongAlign (``loss.py``: ``dense_score``, the ``do_ortho`` branch), read; the test restates it and
    checks equality on multi-segment inputs.
    """
    if input_embeddings.dim() != 2 or output_embeddings.dim() != 2:
        raise ValueError(
            "input_embeddings must be (S, D) and output_embeddings (B, D); got "
            f"{tuple(input_embeddings.shape)}, {tuple(output_embeddings.shape)}"
        )
    b = output_embeddings.shape[0]
    if segment_batch_ids is None:
        if input_embeddings.shape != output_embeddings.shape:
            raise ValueError(
                "input_embeddings and output_embeddings must both be (B, D) without segment_batch_ids; got "
                f"{tuple(input_embeddings.shape)}, {tuple(output_embeddings.shape)}"
            )
        segment_batch_ids = torch.arange(b, device=input_embeddings.device)
    elif input_embeddings.shape[-1] != output_embeddings.shape[-1]:
        raise ValueError(
            f"input_embeddings has dimension {input_embeddings.shape[-1]}, output_embeddings "
            f"{output_embeddings.shape[-1]}"
        )
    e_in = segment_mean_embedding(input_embeddings.detach(), segment_batch_ids, b)
    e_out = F.normalize(output_embeddings, dim=-1)
    bar = F.normalize(e_in.mean(0) if mean_direction is None else mean_direction.detach(), dim=-1)
    proj = (e_in @ bar).unsqueeze(-1) * bar
    return ((e_in - (1 - w) * proj) * e_out).sum(-1)
