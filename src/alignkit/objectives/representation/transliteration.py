"""Sentence-level contrastive alignment of a sentence with its transliteration (cross-lingual alignment)."""

from __future__ import annotations

import torch

from alignkit.objectives.representation._batches import PairBatch, check_positive, example, info_nce
from alignkit.registry import register_objective
from alignkit.types import LossOutput


@register_objective(
    name="transliteration_contrastive",
    aliases=("translit_contrastive",),
    paper="How Transliterations Improve Crosslingual Alignment",
    arxiv="2409.17326",
    family="representation",
    needs_reference=False,
    batch_type=PairBatch,
    requires=("paired_embeddings",),
    tags=("contrastive", "cross-lingual", "in-batch-negatives", "modality:text"),
    verification="paper-formula",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation import PairBatch
batch = PairBatch(a=torch.randn(8, 16, requires_grad=True), b=torch.randn(8, 16))
out = ak.get("transliteration_contrastive")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def transliteration_contrastive(
    batch: PairBatch, *, temperature: float = 0.05, symmetric: bool = True
) -> LossOutput:
    """How Transliterations Improve Crosslingual Alignment (arXiv:2409.17326): in-batch InfoNCE between a
    sentence (``a``) and its transliteration into another script (``b``), used with MLM on both.

    Formula:
        sim(u, v) = cos(u, v)
        L_i = -log exp(sim(a_i, b_i)/tau) / sum_j exp(sim(a_i, b_j)/tau)   (+ the b -> a direction, averaged)

    Hyper-parameters:
        temperature: 0.05 — ours (the catalogue's value, the usual SimCSE setting; not re-checked in the paper).
        symmetric: True — average both directions (ours: the paper's direction was not checked).

    Equal embeddings everywhere give log B; a perfectly matched batch gives 0 as tau -> 0. The paper's
    similarity measures for evaluation are ``crosslingual_similarity_gap`` (below).
    """
    check_positive("temperature", temperature)
    losses = info_nce(batch.a, batch.b, temperature, symmetric)
    with torch.no_grad():
        gap = crosslingual_similarity_gap(batch.a, batch.b)
    return LossOutput(loss=losses.mean(), losses=losses, metrics={"translit/similarity_gap": gap})


def crosslingual_similarity_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine of matched pairs minus mean cosine of mismatched pairs (the paper compares matched with
    random pairs): > 0 when sentences sit closer to their own transliteration."""
    an = torch.nn.functional.normalize(a, dim=-1)
    bn = torch.nn.functional.normalize(b, dim=-1)
    s = an @ bn.T
    n = s.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=s.device)
    return float(s.diagonal().mean() - s[off].mean())
