"""Batches of the representation family: embeddings with labels, paired views, several views, and the shared
checks and helpers (pairwise distances, in-batch InfoNCE) the losses of this family build on.

An objective of this family is a pure function of embeddings that a model (an encoder, a projector) produced;
the embedding trainer (:mod:`alignkit.embedding`) or a user builds the batch. Every batch checks its inputs
when it is built and a bad one raises a ``ValueError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.spec import register_field

register_field(
    "embeddings",
    "one embedding per example, (N, D) (EmbeddingBatch.embeddings)",
    column="text (encoded by the embedding trainer)",
    computed="the encoder + pooling (mean or CLS) of alignkit.embedding",
)
register_field(
    "labels",
    "an integer class / identity per embedding, (N,) (EmbeddingBatch.labels); equal labels are positives",
    column="label (an int or a string; strings are numbered in sorted order)",
    computed="pairs/triplets: anchor and positive share a label, each negative gets its own",
)
register_field(
    "paired_embeddings",
    "two views of B examples, (B, D) each, row i of `a` matching row i of `b` (PairBatch.a / PairBatch.b)",
    column="anchor, positive (encoded by the embedding trainer)",
    computed="the encoder + pooling of alignkit.embedding",
)
register_field(
    "logit_scale",
    "a learnable scalar multiplying the similarities (PairBatch.logit_scale; SigLIP's t = exp(t'))",
)
register_field("logit_bias", "a learnable scalar added to the logits (PairBatch.logit_bias; SigLIP's b)")
register_field("views", "V views of N instances, (N, V, D) (MultiViewBatch.views)")


def _tensor(owner: str, name: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{owner}.{name} must be a torch.Tensor; got {type(value).__name__}")
    return value


def check_finite(owner: str, name: str, value: Tensor) -> None:
    """Raise naming ``owner.name`` when ``value`` holds a NaN or inf."""
    if not torch.isfinite(value.detach()).all():
        bad = (~torch.isfinite(value.detach())).nonzero()[0].tolist()
        raise ValueError(f"{owner}.{name} holds a non-finite value (NaN or inf) at index {tuple(bad)}")


def check_float(owner: str, name: str, value: Any, dims: int | None = None) -> Tensor:
    """``value`` as a checked floating tensor of ``dims`` dimensions (``None``: any)."""
    value = _tensor(owner, name, value)
    if not value.is_floating_point():
        raise ValueError(f"{owner}.{name} must be a floating-point tensor; got dtype {value.dtype}")
    if dims is not None and value.dim() != dims:
        raise ValueError(f"{owner}.{name} must have {dims} dimensions; got shape {tuple(value.shape)}")
    check_finite(owner, name, value)
    return value


def check_scalar(owner: str, name: str, value: Any) -> Tensor | None:
    """A 0-d (or 1-element) floating tensor, or ``None``."""
    if value is None:
        return None
    value = check_float(owner, name, value)
    if value.numel() != 1:
        raise ValueError(f"{owner}.{name} must be a scalar tensor; got shape {tuple(value.shape)}")
    return value.reshape(())


def check_labels(owner: str, name: str, value: Any, n: int) -> Tensor:
    """Integer labels of shape (n,)."""
    value = _tensor(owner, name, value)
    if value.is_floating_point() or value.dtype == torch.bool:
        raise ValueError(f"{owner}.{name} must hold integer labels; got dtype {value.dtype}")
    if tuple(value.shape) != (n,):
        raise ValueError(f"{owner}.{name} must have shape ({n},); got {tuple(value.shape)}")
    return value.long()


@dataclass
class EmbeddingBatch:
    """N embeddings (N, D) and their integer labels (N,): metric learning (triplet, Metrix, proto-triplet,
    contextual similarity). Examples with equal labels are positives of each other."""

    embeddings: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        self.embeddings = check_float("EmbeddingBatch", "embeddings", self.embeddings, dims=2)
        if self.embeddings.shape[0] < 2:
            raise ValueError(
                f"EmbeddingBatch.embeddings needs at least 2 rows; got {self.embeddings.shape[0]}"
            )
        self.labels = check_labels("EmbeddingBatch", "labels", self.labels, self.embeddings.shape[0])
        self.labels = self.labels.to(self.embeddings.device)

    @property
    def batch_size(self) -> int:
        return int(self.embeddings.shape[0])


@dataclass
class PairBatch:
    """Two views of B examples: ``a`` (B, D) and ``b`` (B, D), row i of ``a`` matching row i of ``b`` (image and
    caption, sentence and paraphrase, speech and transcript). ``logit_scale`` / ``logit_bias``: optional
    learnable scalars (SigLIP's exp(t') and b, CLIP's exp(t)); an objective that reads them says what it uses
    without them."""

    a: Tensor
    b: Tensor
    logit_scale: Tensor | None = None
    logit_bias: Tensor | None = None

    def __post_init__(self) -> None:
        self.a = check_float("PairBatch", "a", self.a, dims=2)
        self.b = check_float("PairBatch", "b", self.b, dims=2)
        if self.a.shape != self.b.shape:
            raise ValueError(
                f"PairBatch.a has shape {tuple(self.a.shape)} but PairBatch.b has shape {tuple(self.b.shape)}"
            )
        self.logit_scale = check_scalar("PairBatch", "logit_scale", self.logit_scale)
        self.logit_bias = check_scalar("PairBatch", "logit_bias", self.logit_bias)

    @property
    def batch_size(self) -> int:
        return int(self.a.shape[0])


@dataclass
class MultiViewBatch:
    """V >= 2 augmented views of N instances, ``views`` (N, V, D) (multi-view contrastive learning)."""

    views: Tensor

    def __post_init__(self) -> None:
        self.views = check_float("MultiViewBatch", "views", self.views, dims=3)
        n, v, _ = self.views.shape
        if v < 2:
            raise ValueError(f"MultiViewBatch.views needs at least 2 views (dimension 1); got {v}")
        if n < 2:
            raise ValueError(f"MultiViewBatch.views needs at least 2 instances (dimension 0); got {n}")

    @property
    def batch_size(self) -> int:
        return int(self.views.shape[0])


def example(code: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach the runnable example `alignkit explain` prints (objectives on non-LM batches carry their own)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.example = code.strip()  # type: ignore[attr-defined]
        return fn

    return deco


def euclidean(x: Tensor, y: Tensor, eps: float = 1e-12) -> Tensor:
    """Pairwise Euclidean distances (N, M), with a gradient that stays finite at distance 0."""
    sq = (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1)
    return sq.clamp_min(eps).sqrt() * (sq > eps)


def same_label(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(positive mask without the diagonal, negative mask), both (N, N) bool."""
    eq = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return eq & ~eye, ~eq


def info_nce(a: Tensor, b: Tensor, temperature: float, symmetric: bool = True) -> Tensor:
    """Per-example in-batch InfoNCE of cosine similarities (B,): -log softmax_j(cos(a_i, b_j)/tau)[i]
    (averaged with the b->a direction when ``symmetric``)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    loss = F.cross_entropy(logits, target, reduction="none")
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, target, reduction="none")) / 2
    return loss


def check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0; got {value}")
