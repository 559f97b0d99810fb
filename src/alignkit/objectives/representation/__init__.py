"""Representation alignment: contrastive, metric-learning, cross-modal and sequence-alignment losses of embeddings.

Objectives take the family's own batches (:class:`EmbeddingBatch`, :class:`PairBatch`, :class:`MultiViewBatch`
and the per-paper batches in their modules); ``alignkit list --family representation`` lists them, and
``alignkit list --tag modality:audio`` (text, image, audio, video, cross-modal) filters by modality.
The embedding trainer is :mod:`alignkit.embedding` (``alignkit embed-train``).
"""

from alignkit.objectives.representation import (  # noqa: F401
    align_uniform,
    calf,
    clip,
    clip_ssl,
    contextual,
    embedding_regression,
    flow_prior,
    forward_sum,
    lol,
    macl,
    metrix,
    multiview,
    nmla,
    proto_icnn,
    softrepa,
    speech_matching,
    transliteration,
    triplet,
    videolights,
    word_alignment,
)
from alignkit.objectives.representation._batches import EmbeddingBatch, MultiViewBatch, PairBatch

__all__ = ["EmbeddingBatch", "MultiViewBatch", "PairBatch"]
