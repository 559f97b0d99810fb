"""RankMixup: ranking-based mixup losses for calibration (MRL and M-NDCG)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.classification._batch import ClassificationBatch
from alignkit.registry import register_objective
from alignkit.types import LossOutput

PAPER = "RankMixup: Ranking-Based Mixup Training for Network Calibration"
TAGS = ("modality:vision", "classification", "calibration", "mixup")


def mrl_terms(logits: Tensor, mixed_logits: Tensor, relevance: Tensor, margin: float) -> Tensor:
    """Per-example MRL hinge (B,): relu(max_k h~_k - max_k h_k + m), zero where the mixed label is one-hot."""
    diff = mixed_logits.max(-1).values - logits.max(-1).values
    keep = (relevance != 1.0).to(logits.dtype)
    return keep * F.relu(diff + margin)


def mndcg_terms(logits: Tensor, mixed_logits: Tensor, relevance: Tensor) -> Tensor:
    """Per-example 1 - NDCG (B,) of the confidences of [raw, mixed_1..M] ranked by their relevance [1, r_1..r_M].

    ``mixed_logits``: (M, B, C); ``relevance``: (B, M), the max of each mixed soft label. As the official code:
    gains are the confidences (max softmax) themselves, the raw sample first, then the mixed ones sorted by
    relevance; IDCG uses the relevances as gains; the ratio is inverted when DCG exceeds IDCG.
    """
    m = mixed_logits.shape[0]
    conf_raw = torch.softmax(logits, -1).amax(-1, keepdim=True)  # (B, 1)
    conf_mix = torch.softmax(mixed_logits, -1).amax(-1).t()  # (B, M)
    order = torch.argsort(relevance, dim=1, descending=True)
    discount = torch.log2(torch.arange(2, m + 3, dtype=logits.dtype))  # log2(r + 1), r = 1..M+1
    dcg = (torch.cat([conf_raw, conf_mix.gather(1, order)], 1) / discount).sum(1)
    ones = torch.ones_like(conf_raw)
    idcg = (torch.cat([ones, relevance.gather(1, order)], 1) / discount).sum(1)
    ndcg = torch.where(idcg > dcg, dcg / idcg, idcg / dcg)
    return 1.0 - ndcg


def _check(batch: ClassificationBatch) -> tuple[Tensor, Tensor, Tensor]:
    logits = batch.need("logits")
    views = batch.need("views")
    relevance = batch.need("view_weights")
    if not bool(((relevance >= 0.5 - 1e-6) & (relevance <= 1.0 + 1e-6)).all()):
        raise ValueError(
            "ClassificationBatch.view_weights must hold the max of each mixed soft label, in [0.5, 1] "
            "(max(lambda, 1 - lambda), or 1 when both mixed samples share a class)"
        )
    return logits, torch.stack(views), relevance


@register_objective(
    name="rankmixup_mrl",
    paper=PAPER,
    arxiv="2308.11990",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_logits", "class_targets", "class_views", "class_view_weights"),
    tags=TAGS,
    verification="official-code-parity",
)
def rankmixup_mrl(batch: ClassificationBatch, *, margin: float = 0.1, alpha: float = 0.1) -> LossOutput:
    """RankMixup's mixup-based ranking loss, MRL (Noh, Park, Lee, Ham; ICCV 2023; arXiv:2308.11990).

    A mixed sample is more ambiguous than a raw one, so its top score should be lower by a margin. As in the
    authors' code (``calibrate/losses/rankmixup.py``, ``RankMixup_MRL``), the comparison uses the max *logit*
    and skips samples whose mixed label is one-hot (mixed with its own class). Cross-entropy is on raw samples
    only (no CE on mixed labels). One difference: the official code multiplies a (B,) skip mask by the (B, 1)
    hinge, which broadcasts to a (B, B) product (mean = mean(mask) * mean(hinge)); we apply the mask per sample,
    as the paper's formula reads. The two agree when no sample is skipped (tested against the official code).

    Formula:
        L_MRL,i = [r_i != 1] * max(0, max_k h~_ik - max_k h_ik + m)      (h: raw logits, h~: mixed, views[0])
        L = CE(h, y) + alpha * mean_i L_MRL,i

    Hyper-parameters:
        margin: 0.1 — the official ``RankMixup_MRL(margin=0.1)`` and configs/loss/mrl.yaml.
        alpha: 0.1 — the official ``RankMixup_MRL(alpha=0.1)`` (weight of the ranking term).

    Inputs: raw ``logits`` (B, C), integer ``targets``; ``views[0]`` mixed logits; ``view_weights`` (B, 1): the
    max of the mixed soft label (max(lambda, 1 - lambda), or 1 for a same-class partner).
    """
    logits, mixed, relevance = _check(batch)
    ce = F.cross_entropy(logits, batch.class_ids())
    terms = mrl_terms(logits, mixed[0], relevance[:, 0], margin)
    loss = ce + alpha * terms.mean()
    return LossOutput(
        loss=loss,
        losses=loss.expand(logits.shape[0]),
        metrics={"ce": float(ce.detach()), "mrl": float(terms.detach().mean())},
    )


@register_objective(
    name="rankmixup_mndcg",
    paper=PAPER,
    arxiv="2308.11990",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_logits", "class_targets", "class_views", "class_view_weights"),
    tags=TAGS,
    verification="official-code-parity",
)
def rankmixup_mndcg(batch: ClassificationBatch, *, alpha: float = 0.1) -> LossOutput:
    """RankMixup's mixup-based NDCG loss, M-NDCG (Noh, Park, Lee, Ham; ICCV 2023; arXiv:2308.11990).

    With M mixed versions of each sample, the confidences of [raw, mixed_1..M] should be ranked like their label
    relevances [1, r_1..r_M]; the loss is 1 - NDCG of that ranking. Follows the authors' ``RankMixup_MNDCG``.

    Formula:
        s_0 = max softmax(h),  s_j = max softmax(h~_j),  r_0 = 1,  r_j = max of mixed soft label j
        order j by r_j descending;  D_k = log2(k + 1), k = 1..M+1
        DCG = sum_k s_(k) / D_k,   IDCG = sum_k r_(k) / D_k,   NDCG = DCG/IDCG if IDCG > DCG else IDCG/DCG
        L = CE(h, y) + alpha * mean_i (1 - NDCG_i)

    Hyper-parameters:
        alpha: 0.1 — the official ``RankMixup_MNDCG(alpha=0.1)``.

    Inputs: raw ``logits``, integer ``targets``; ``views`` M mixed logits; ``view_weights`` (B, M) relevances.
    """
    logits, mixed, relevance = _check(batch)
    ce = F.cross_entropy(logits, batch.class_ids())
    terms = mndcg_terms(logits, mixed, relevance)
    loss = ce + alpha * terms.mean()
    return LossOutput(
        loss=loss,
        losses=loss.expand(logits.shape[0]),
        metrics={"ce": float(ce.detach()), "1-ndcg": float(terms.detach().mean())},
    )
