"""The speech-encoder <-> LLM matching loss: pull projected speech embeddings onto the transcript's embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.representation._batches import check_float, example
from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

KINDS = ("cos_mean", "mse_mean")
register_field(
    "sequence_pairs",
    "two padded sequences per example with masks: a (B, S, D) / a_mask and b (B, L, D) / b_mask (SequencePairBatch)",
)


@dataclass
class SequencePairBatch:
    """Two sequences per example in one space: ``a`` (B, S, D) with ``a_mask`` (B, S) — e.g. projected speech
    frames — and ``b`` (B, L, D) with ``b_mask`` (B, L) — e.g. the LLM's token embeddings of the transcript."""

    a: Tensor
    a_mask: Tensor
    b: Tensor
    b_mask: Tensor

    def __post_init__(self) -> None:
        self.a = check_float("SequencePairBatch", "a", self.a, dims=3)
        self.b = check_float("SequencePairBatch", "b", self.b, dims=3)
        if self.a.shape[0] != self.b.shape[0] or self.a.shape[2] != self.b.shape[2]:
            raise ValueError(
                f"SequencePairBatch.a {tuple(self.a.shape)} and b {tuple(self.b.shape)} must share B and D"
            )
        for name, like in (("a_mask", self.a), ("b_mask", self.b)):
            m = getattr(self, name)
            if tuple(m.shape) != tuple(like.shape[:2]):
                raise ValueError(
                    f"SequencePairBatch.{name} has shape {tuple(m.shape)}; expected {tuple(like.shape[:2])}"
                )
            if (m.sum(1) == 0).any():
                raise ValueError(f"SequencePairBatch.{name} selects no position in some row")
            setattr(self, name, m.bool())


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1)


@register_objective(
    name="speech_llm_matching",
    aliases=("modality_matching",),
    paper="A Comprehensive Solution to Connect Speech Encoder and Large Language Model for ASR",
    arxiv="2406.17272",
    family="representation",
    needs_reference=False,
    batch_type=SequencePairBatch,
    requires=("sequence_pairs",),
    tags=("cross-modal-alignment", "asr", "modality:audio", "modality:text", "modality:cross-modal"),
    verification="reconstruction",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation.speech_matching import SequencePairBatch
batch = SequencePairBatch(a=torch.randn(2, 9, 8, requires_grad=True), a_mask=torch.ones(2, 9),
                          b=torch.randn(2, 4, 8), b_mask=torch.ones(2, 4))
out = ak.get("speech_llm_matching")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def speech_llm_matching(batch: SequencePairBatch, *, kind: str = "cos_mean") -> LossOutput:
    """A Comprehensive Solution to Connect Speech Encoder and Large Language Model for ASR (arXiv:2406.17272): the matching term added to
    the LLM's transcript cross-entropy, L = CE + lambda * L_match, that aligns the projector's speech
    embeddings (``a``) with the LLM's text embeddings of the transcript (``b``, frozen: detach it).

    Formula:
        m_a = mean over valid frames of a,  m_b = mean over valid tokens of b
        L_match = mean_b (1 - cos(m_a, m_b))          (kind="cos_mean")
        L_match = mean_b ||m_a - m_b||^2 / D          (kind="mse_mean")

    Hyper-parameters:
        kind: "cos_mean" — ours: the abstract gives no formula for the matching loss; mean-pooled cosine is the
            project catalogue's proposal.

    Reconstruction: only the abstract was available; the pooling and distance are guesses, stated here. Zero
    when the pooled sequences agree; invariant to padding.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    ma, mb = masked_mean(batch.a, batch.a_mask), masked_mean(batch.b, batch.b_mask)
    if kind == "cos_mean":
        losses = 1 - F.cosine_similarity(ma, mb, dim=-1)
    else:
        losses = (ma - mb).square().mean(-1)
    return LossOutput(loss=losses.mean(), losses=losses, metrics={"matching/loss": losses.mean().item()})
