"""Metrix: mixup for deep metric learning — mixed positive/negative embeddings with interpolated labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.representation._batches import EmbeddingBatch, example, same_label
from alignkit.registry import register_objective
from alignkit.types import LossOutput


def contrastive_terms(s: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """The contrastive loss's positive and negative terms on cosine similarities: rho+(s) = 1 - s,
    rho-(s) = [s - margin]_+ (Metrix, Table 1, contrastive loss written on similarities)."""
    return 1.0 - s, (s - margin).clamp_min(0)


def mix_embeddings(pos: Tensor, neg: Tensor, lam: Tensor) -> Tensor:
    """Embedding-level mixup of a positive and a negative, renormalised: normalize(lam*pos + (1-lam)*neg)."""
    return F.normalize(lam.unsqueeze(-1) * pos + (1 - lam.unsqueeze(-1)) * neg, dim=-1)


@register_objective(
    name="metrix",
    aliases=("metric_mix",),
    paper="It Takes Two to Tango: Mixup for Deep Metric Learning",
    arxiv="2106.04990",
    family="representation",
    needs_reference=False,
    batch_type=EmbeddingBatch,
    requires=("embeddings", "labels"),
    tags=("metric-learning", "mixup", "modality:image", "modality:text"),
    verification="reconstruction",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation import EmbeddingBatch
batch = EmbeddingBatch(embeddings=torch.randn(8, 4, requires_grad=True), labels=torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
out = ak.get("metrix")(batch, seed=0)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def metrix(
    batch: EmbeddingBatch,
    *,
    margin: float = 0.5,
    mix_weight: float = 1.0,
    alpha: float = 2.0,
    mixes_per_anchor: int = 4,
    seed: int = -1,
) -> LossOutput:
    """It Takes Two to Tango: Mixup for Deep Metric Learning (Metrix, arXiv:2106.04990), embedding mixup on
    the contrastive base loss.

    For an anchor a, a positive p and a negative n are mixed, e = normalize(lam f_p + (1-lam) f_n),
    lam ~ Beta(alpha, alpha); e counts as a positive with weight lam and as a negative with weight 1-lam.

    Formula:
        s(x, y) = <x, y> / (||x|| ||y||),  rho+(s) = 1 - s,  rho-(s) = [s - margin]_+
        L_clean(a) = mean_{p in P(a)} rho+(s(a, p)) + mean_{n in N(a)} rho-(s(a, n))
        L_mix(a)   = mean_{(p, n, lam) sampled} lam rho+(s(a, e)) + (1 - lam) rho-(s(a, e))
        L = mean_a L_clean(a) + mix_weight * mean_a L_mix(a)
        lam = 1 turns e into p (the positive term), lam = 0 into n (the negative term).

    Hyper-parameters:
        margin: 0.5 — the contrastive loss's negative margin on cosine similarity (pytorch-metric-learning's
            ``ContrastiveLoss(neg_margin=0.5)`` with cosine similarity, the base the paper builds on).
        mix_weight: 1.0 — weight w of the mixed loss (the paper's default, recalled; not re-checked).
        alpha: 2.0 — Beta(alpha, alpha) of the mixing factor (the paper's default, recalled).
        mixes_per_anchor: 4 — (p, n) pairs mixed per anchor, drawn uniformly (ours, because mixing every pair
            is cubic in the batch size).
        seed: -1 — draws from torch's global generator; >= 0 uses a private generator with that seed.

    Reconstruction: the generic mixed-loss form (positive term weighted by lam, negative by 1-lam) is the
    paper's; the per-term means and the uniform sampling of pairs are ours. Anchors without a positive or a
    negative contribute only the terms they have.
    """
    x = F.normalize(batch.embeddings, dim=-1)
    n = x.shape[0]
    s = x @ x.T
    pos, neg = same_label(batch.labels)
    rp, rn = contrastive_terms(s, margin)
    has_pos, has_neg = pos.any(1), neg.any(1)
    clean = (rp * pos).sum(1) / pos.sum(1).clamp_min(1) + (rn * neg).sum(1) / neg.sum(1).clamp_min(1)
    gen = torch.Generator(device="cpu").manual_seed(seed) if seed >= 0 else None
    anchors = (has_pos & has_neg).nonzero().flatten()
    mixed = torch.zeros(n, dtype=x.dtype, device=x.device)
    if len(anchors) and mix_weight != 0:
        a = anchors.repeat_interleave(mixes_per_anchor)
        # one uniform positive and negative per draw: multinomial over each anchor's row mask
        p_idx = torch.multinomial(pos[a].float().cpu(), 1, generator=gen).flatten().to(x.device)
        n_idx = torch.multinomial(neg[a].float().cpu(), 1, generator=gen).flatten().to(x.device)
        lam = (
            torch.distributions.Beta(alpha, alpha).sample((len(a),))
            if gen is None
            else _beta(alpha, len(a), gen)
        )
        lam = lam.to(x.device, x.dtype)
        e = mix_embeddings(x[p_idx], x[n_idx], lam)
        se = (x[a] * e).sum(-1)
        mp, mn = contrastive_terms(se, margin)
        per_draw = lam * mp + (1 - lam) * mn
        mixed = mixed.index_add(0, a, per_draw / mixes_per_anchor)
    losses = clean + mix_weight * mixed
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={"metrix/clean": clean.mean().item(), "metrix/mixed": mixed.mean().item()},
    )


def _beta(alpha: float, k: int, gen: torch.Generator) -> Tensor:
    """Beta(alpha, alpha) draws reproducible from ``gen``: torch's Beta sampler takes no generator, so the
    global generator is seeded from ``gen`` for the draw and its state restored afterwards."""
    state = torch.random.get_rng_state()
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    try:
        return torch.distributions.Beta(alpha, alpha).sample((k,))
    finally:
        torch.random.set_rng_state(state)
