"""AugMix: augmentation mixing and the Jensen-Shannon consistency loss across the clean and augmented views."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.classification._batch import ClassificationBatch
from alignkit.registry import register_objective
from alignkit.types import LossOutput

PAPER = "AugMix: A Simple Data Processing Method to Improve Robustness and Uncertainty"


def jensen_shannon(logits: Sequence[Tensor], clamp: float = 1e-7) -> Tensor:
    """Per-example JS divergence (B,) among the softmax distributions of ``logits``: (1/K) sum_j KL(p_j || M).

    The mixture M is clamped to [clamp, 1] before its log, as the reference AugMix code and timm do."""
    probs = [torch.softmax(z, dim=-1) for z in logits]
    log_m = torch.stack(probs).mean(0).clamp(clamp, 1.0).log()
    kls = [(p * (torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)) - log_m)).sum(-1) for p in probs]
    return torch.stack(kls).mean(0)


@register_objective(
    name="augmix_jsd",
    aliases=("augmix",),
    paper=PAPER,
    arxiv="1912.02781",
    family="classification",
    needs_reference=False,
    batch_type=ClassificationBatch,
    requires=("class_logits", "class_targets", "class_views"),
    tags=("modality:vision", "classification", "robustness", "consistency"),
    verification="library-parity",
)
def augmix_jsd(batch: ClassificationBatch, *, lam: float = 12.0, label_smoothing: float = 0.0) -> LossOutput:
    """AugMix: A Simple Data Processing Method to Improve Robustness and Uncertainty (Hendrycks, Mu, Cubuk, Zoph,
    Gilmer, Lakshminarayanan; arXiv:1912.02781).

    Cross-entropy on the clean view plus a Jensen-Shannon consistency term that asks the clean view and the
    AugMix-augmented views (``views``, usually two) to give the same prediction. Equal to timm's
    ``JsdCrossEntropy(num_splits=1 + len(views), alpha=lam, smoothing=label_smoothing)``.

    Formula:
        p_0 = softmax(h_clean), p_j = softmax(h_aug_j);  M = (1/K) sum_j p_j  (K = 1 + #views, clamped to [1e-7, 1])
        JS = (1/K) sum_j KL(p_j || M)
        L = CE_ls(h_clean, y) + lam * mean_i JS_i         (CE_ls: cross-entropy with label smoothing ls)

    Hyper-parameters:
        lam: 12.0 — the paper's §4 ("lambda = 12") and timm's ``alpha=12``.
        label_smoothing: 0.0 — the paper's CE has none; timm's JsdCrossEntropy defaults to 0.1.
    """
    logits = batch.need("logits")
    views = batch.need("views")
    ce = F.cross_entropy(logits, batch.class_ids(), label_smoothing=label_smoothing)
    js = jensen_shannon([logits, *views])
    loss = ce + lam * js.mean()
    return LossOutput(
        loss=loss,
        losses=loss.expand(logits.shape[0]),
        metrics={"ce": float(ce.detach()), "jsd": float(js.detach().mean())},
    )


def augment_and_mix(
    x: Tensor,
    ops: Sequence[Callable[[Tensor, torch.Generator], Tensor]],
    *,
    width: int = 3,
    depth: int = -1,
    alpha: float = 1.0,
    generator: torch.Generator,
) -> Tensor:
    """AugMix's augmentation (paper Algorithm 1) of a batch ``x`` (B, ...), one mixture per example.

    ``width`` chains of ``depth`` ops (``depth=-1``: 1-3 at random) drawn from ``ops`` (each
    ``op(x_single, generator) -> x_single``); chain weights w ~ Dirichlet(alpha), skip weight m ~ Beta(alpha, alpha).

    Formula:
        x_aug = m * x + (1 - m) * sum_{i=1..width} w_i * chain_i(x)

    Hyper-parameters:
        width: 3, depth: -1 (1 to 3), alpha: 1.0 — the paper's Algorithm 1 / official augmix code defaults.
    """
    if not ops:
        raise ValueError("augment_and_mix needs at least one op")
    out = torch.empty_like(x)
    conc = torch.full((width,), float(alpha))
    for b in range(x.shape[0]):
        w = torch._sample_dirichlet(conc, generator=generator)
        g1 = torch._standard_gamma(torch.tensor([alpha]), generator=generator)
        g2 = torch._standard_gamma(torch.tensor([alpha]), generator=generator)
        m = float(g1 / (g1 + g2))
        mix = torch.zeros_like(x[b])
        for i in range(width):
            d = depth if depth > 0 else int(torch.randint(1, 4, (1,), generator=generator))
            xi = x[b]
            for _ in range(d):
                op = ops[int(torch.randint(len(ops), (1,), generator=generator))]
                xi = op(xi, generator)
            mix = mix + float(w[i]) * xi
        out[b] = m * x[b] + (1 - m) * mix
    return out
