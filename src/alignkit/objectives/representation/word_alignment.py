"""Multilingual alignment of contextual word representations: aligned word pairs pulled together, anchor kept."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from alignkit.objectives.representation._batches import check_float, example
from alignkit.registry import register, register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

PAPER = "Multilingual Alignment of Contextual Word Representations"
register_field(
    "word_pairs",
    "contextual vectors of word pairs aligned across a parallel sentence pair (source, target), (P, D) each, and the "
    "anchor language's vectors now and under the frozen original model (WordAlignmentBatch)",
)


@dataclass
class WordAlignmentBatch:
    """``source`` (P, D) and ``target`` (P, D): contextual vectors of the P aligned word pairs (fast_align on
    parallel text); ``anchor`` (M, D): the anchor (English) words' vectors under the model being trained, and
    ``anchor_original`` (M, D): the same words under the frozen original model."""

    source: Tensor
    target: Tensor
    anchor: Tensor
    anchor_original: Tensor

    def __post_init__(self) -> None:
        for name in ("source", "target", "anchor", "anchor_original"):
            setattr(self, name, check_float("WordAlignmentBatch", name, getattr(self, name), dims=2))
        if self.source.shape != self.target.shape:
            raise ValueError(
                f"WordAlignmentBatch.target has shape {tuple(self.target.shape)}; expected {tuple(self.source.shape)}"
            )
        if self.anchor.shape != self.anchor_original.shape:
            raise ValueError("WordAlignmentBatch.anchor_original must have the shape of anchor")


@register_objective(
    name="contextual_word_alignment",
    aliases=("multilingual_word_alignment",),
    paper=PAPER,
    arxiv="2002.03518",
    family="representation",
    needs_reference=False,
    batch_type=WordAlignmentBatch,
    requires=("word_pairs",),
    tags=("cross-lingual", "word-alignment", "modality:text"),
    verification="paper-formula",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation.word_alignment import WordAlignmentBatch
batch = WordAlignmentBatch(source=torch.randn(6, 8, requires_grad=True), target=torch.randn(6, 8),
                           anchor=torch.randn(5, 8, requires_grad=True), anchor_original=torch.randn(5, 8))
out = ak.get("contextual_word_alignment")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def contextual_word_alignment(batch: WordAlignmentBatch, *, lam: float = 1.0) -> LossOutput:
    """Multilingual Alignment of Contextual Word Representations (arXiv:2002.03518).

    Formula:
        L = sum_{(i, j) aligned} ||f(i, s) - f(j, t)||^2 + lam * sum_{i in anchor} ||f(i, t) - f_0(i, t)||^2
        (here averaged: mean over pairs + lam * mean over anchor words; f_0 = the frozen original model)

    Hyper-parameters:
        lam: 1.0 — weight of the regulariser that keeps the anchor (English) space in place (paper §3, lambda
            = 1 as recalled; not re-checked).

    The squared-distance sums are the paper's (§3); averaging instead of summing only rescales. Zero when the
    aligned vectors coincide and the anchor is unchanged.
    """
    pair = (batch.source - batch.target).square().sum(-1)
    anchor = (batch.anchor - batch.anchor_original).square().sum(-1)
    loss = pair.mean() + lam * anchor.mean()
    return LossOutput(
        loss=loss,
        losses=pair,
        metrics={"wordalign/pairs": pair.mean().item(), "wordalign/anchor": anchor.mean().item()},
    )


@register(
    name="contextual_word_retrieval",
    kind="metric",
    family="representation",
    paper=PAPER,
    arxiv="2002.03518",
    tags=("cross-lingual", "embedding-metric", "modality:text"),
    verification="paper-formula",
)
def contextual_word_retrieval(source: Tensor, target: Tensor, *, csls_k: int = 0) -> float:
    """Multilingual Alignment of Contextual Word Representations (word retrieval accuracy, arXiv:2002.03518):
    the share of aligned source vectors whose nearest target vector (cosine; CSLS when csls_k > 0) is their
    aligned partner.

    Formula:
        acc = mean_i 1[argmax_j sim(s_i, t_j) = i],  sim = cos  or  CSLS(s, t) = 2 cos(s, t) - r_t(s) - r_s(t)
        r_t(s) = mean cos of s to its csls_k nearest targets (and symmetrically)

    Hyper-parameters:
        csls_k: 0 — 0 uses plain cosine nearest neighbour; the paper uses CSLS (k = 10 is the usual choice).
    """
    s = torch.nn.functional.normalize(source.detach(), dim=-1)
    t = torch.nn.functional.normalize(target.detach(), dim=-1)
    sim = s @ t.T
    if csls_k > 0:
        k = min(csls_k, sim.shape[1])
        rs = sim.topk(k, dim=1).values.mean(1, keepdim=True)
        rt = sim.topk(min(csls_k, sim.shape[0]), dim=0).values.mean(0, keepdim=True)
        sim = 2 * sim - rs - rt
    return float((sim.argmax(1) == torch.arange(sim.shape[0])).float().mean())
