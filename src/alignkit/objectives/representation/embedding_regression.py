"""Sentence-embedding regression: regress a pooled decoder state onto a frozen sentence encoder's embedding."""

from __future__ import annotations

import torch.nn.functional as F

from alignkit.objectives.representation._batches import PairBatch, example
from alignkit.registry import register_objective
from alignkit.types import LossOutput

KINDS = ("cosine", "mse", "l1")


@register_objective(
    name="embedding_regression",
    aliases=("sentence_embedding_regression",),
    paper="Multitask learning in Audio Captioning: a sentence embedding regression loss acts as a regularizer",
    arxiv="2305.01482",
    family="representation",
    needs_reference=False,
    batch_type=PairBatch,
    requires=("paired_embeddings",),
    tags=("distillation", "auxiliary", "modality:audio", "modality:text", "modality:cross-modal"),
    verification="paper-formula",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation import PairBatch
batch = PairBatch(a=torch.randn(8, 16, requires_grad=True), b=torch.randn(8, 16))
out = ak.get("embedding_regression")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def embedding_regression(batch: PairBatch, *, kind: str = "cosine") -> LossOutput:
    """Multitask learning in Audio Captioning: a sentence embedding regression loss acts as a regularizer
    (arXiv:2305.01482): the auxiliary term of L = CE + lambda * d(proj(pool(h)), SBERT(y_ref)).

    ``a``: the projected, pooled decoder state; ``b``: the frozen sentence-encoder embedding of the reference
    caption (detach it).

    Formula:
        d = 1 - cos(a_i, b_i)            (kind="cosine")
        d = ||a_i - b_i||^2 / D          (kind="mse")
        d = ||a_i - b_i||_1 / D          (kind="l1")
        L = mean_i d

    Hyper-parameters:
        kind: "cosine" — ours; the abstract does not fix the distance (the catalogue lists MSE/L1/cosine).

    Zero when the prediction equals the target; the cosine form is invariant to positive scaling of ``a``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if kind == "cosine":
        losses = 1 - F.cosine_similarity(batch.a, batch.b, dim=-1)
    elif kind == "mse":
        losses = (batch.a - batch.b).square().mean(-1)
    else:
        losses = (batch.a - batch.b).abs().mean(-1)
    return LossOutput(
        loss=losses.mean(), losses=losses, metrics={"regression/distance": losses.mean().item()}
    )
