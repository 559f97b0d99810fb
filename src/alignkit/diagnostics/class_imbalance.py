"""Heavy-tailed class imbalance (Kunstner et al., arXiv:2402.19449): on language data most classes (tokens) are
rare; gradient descent makes little progress on them while Adam and sign descent do. Per-frequency-group loss
and gradient share make this visible."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from alignkit.registry import register

PAPER = "Heavy-Tailed Class Imbalance and Why Adam Outperforms Gradient Descent on Language Models"


def frequency_groups(counts: Tensor, n_groups: int = 10) -> Tensor:
    """Group id (0 = most frequent) of every class: classes sorted by frequency and cut into ``n_groups`` groups
    holding about the same number of *samples* each (the paper's grouping), so the first group has a few
    frequent classes and the last many rare ones. Classes with zero count go to the last group."""
    c = torch.as_tensor(counts, dtype=torch.float64)
    if c.dim() != 1 or bool((c < 0).any()):
        raise ValueError("counts must be a 1-D tensor of non-negative class counts")
    if n_groups < 1:
        raise ValueError("n_groups must be >= 1")
    order = torch.argsort(c, descending=True, stable=True)
    cum = torch.cumsum(c[order], 0) - c[order]  # samples in more frequent classes
    total = c.sum().clamp_min(1e-12)
    gid_sorted = torch.clamp((cum / total * n_groups).floor().long(), max=n_groups - 1)
    gid_sorted[c[order] == 0] = n_groups - 1
    out = torch.empty_like(gid_sorted)
    out[order] = gid_sorted
    return out


@register(
    name="loss_by_frequency",
    kind="diagnostic",
    family="optimization",
    paper=PAPER,
    arxiv="2402.19449",
    aliases=("class_imbalance",),
    tags=("modality:text", "class-imbalance", "adam-vs-gd"),
    verification="paper-formula",
)
def loss_by_frequency(
    logits: Tensor,
    targets: Tensor,
    counts: Tensor,
    *,
    n_groups: int = 10,
    features: Tensor | None = None,
    ignore_index: int = -100,
) -> dict[str, Any]:
    """Heavy-Tailed Class Imbalance and Why Adam Outperforms Gradient Descent on Language Models (arXiv:2402.19449).

    Classes are sorted by frequency and grouped so each group holds ~1/n_groups of the samples; the mean loss
    per group shows which classes the optimiser is fitting. On a heavy-tailed (Zipf) vocabulary the gradient of
    the output layer is dominated by the frequent classes, so GD barely moves the rare groups' loss.

    Formula:
        group(c) = floor(n_groups * (sum of counts of classes more frequent than c) / N)
        loss_g = mean_{i : y_i in g} -log softmax(z_i)[y_i]
        output-layer gradient row c (softmax cross-entropy, mean over n samples with features h_i):
            G_c = (1/n) sum_i (softmax(z_i)_c - [y_i = c]) h_i
        grad_share_g = sum_{c in g} ||G_c||^2 / sum_c ||G_c||^2      (features given; h_i = 1 without)

    Hyper-parameters:
        n_groups: 10 — the paper's figures group classes into 10 groups of equal sample mass.
        features: None — the inputs h_i of the output layer (n, d); without them (ours) the bias gradient is
            used.
        ignore_index: -100 — targets to skip (padding), as in torch's cross_entropy.

    ``logits`` (n, C) or (..., C), ``targets`` (n,) or (...), ``counts`` (C,) class frequencies in the training
    data. Returns ``loss_per_group`` (n_groups,), ``samples_per_group``, ``classes_per_group``,
    ``grad_share_per_group`` and ``group_of_class``.
    """
    C = logits.shape[-1]
    z = logits.reshape(-1, C)
    y = targets.reshape(-1)
    if y.numel() != z.shape[0]:
        raise ValueError(f"targets has {y.numel()} entries but logits has {z.shape[0]} rows")
    counts = torch.as_tensor(counts)
    if counts.numel() != C:
        raise ValueError(f"counts has {counts.numel()} classes but logits has {C}")
    keep = y != ignore_index
    z, y = z[keep].float(), y[keep]
    h = None
    if features is not None:
        h = features.reshape(-1, features.shape[-1])[keep].float()
    gid = frequency_groups(counts, n_groups).to(y.device)
    nll = torch.nn.functional.cross_entropy(z, y, reduction="none").detach()
    g_of_sample = gid[y]
    loss = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, g_of_sample.cpu(), nll.double().cpu())
    n = torch.bincount(g_of_sample.cpu(), minlength=n_groups).double()
    resid = (torch.softmax(z.detach(), -1) - torch.nn.functional.one_hot(y, C).float()) / max(1, y.numel())
    rows = resid.T @ h.detach() if h is not None else resid.sum(0, keepdim=True).T  # (C, d)
    row_sq = (rows.double() ** 2).sum(-1).cpu()
    share = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, gid.cpu(), row_sq)
    return {
        "loss_per_group": torch.where(n > 0, loss / n.clamp_min(1), torch.full_like(loss, float("nan"))),
        "samples_per_group": n,
        "classes_per_group": torch.bincount(gid.cpu(), minlength=n_groups),
        "grad_share_per_group": share / share.sum().clamp_min(1e-300),
        "group_of_class": gid,
    }


def zipf_classification(
    n: int, n_classes: int, dim: int, *, exponent: float = 1.0, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """The paper's minimal setting: a linearly separable-ish problem whose class frequencies follow
    ``p(c) ~ 1/(c+1)^exponent``; features are the class's random mean plus noise. Returns (x, y, counts)."""
    g = torch.Generator().manual_seed(seed)
    p = 1.0 / torch.arange(1, n_classes + 1, dtype=torch.float64) ** exponent
    y = torch.multinomial(p / p.sum(), n, replacement=True, generator=g)
    means = torch.randn(n_classes, dim, generator=g)
    x = means[y] + 0.5 * torch.randn(n, dim, generator=g)
    return x, y, torch.bincount(y, minlength=n_classes)
