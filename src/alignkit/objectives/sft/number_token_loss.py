"""Number Token Loss: a regression-like loss on the probabilities of number tokens, added to cross-entropy."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.batches_extra import extra
from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch, SFTBatch

PAPER = "Regress, Don't Guess -- A Regression-like Loss on Number Tokens for Language Models"
KINDS = ("mse", "was")


def number_token_terms(
    number_logits: Tensor, number_values: Tensor, target_values: Tensor, mask: Tensor, kind: str = "mse"
) -> tuple[Tensor, Tensor]:
    """Per-position NTL terms (B, T) and the bool mask of number positions where they apply.

    ``mse``: (y - sum_i p_i v_i)^2. ``was``: Wasserstein-1 between the predicted distribution over number values
    and the point mass at y, computed from CDFs as the official code does (sum_i |F_pred(v_i) - F_y(v_i)| times
    the gap to the next value; for unit-spaced digits the gap is 1), which equals sum_i p_i |v_i - y|.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    at = ~torch.isnan(target_values) & mask.bool()
    y = torch.where(at, target_values, torch.zeros_like(target_values)).to(number_logits.dtype)
    p = torch.softmax(number_logits, dim=-1)
    if kind == "mse":
        terms = (y - (p * number_values.to(p.dtype)).sum(-1)) ** 2
    else:
        values, order = torch.sort(number_values.to(p.dtype))
        cdf_pred = torch.cumsum(p[..., order], dim=-1)
        cdf_true = (values >= y.unsqueeze(-1)).to(p.dtype)  # point mass at y: F(v) = [v >= y]
        gaps = torch.diff(values, append=values[-1:])  # last CDF difference is 0 anyway
        terms = ((cdf_pred - cdf_true).abs() * gaps).sum(-1)
    return torch.where(at, terms, torch.zeros_like(terms)), at


@register_objective(
    name="number_token_loss",
    verification="paper-formula",
    aliases=("ntl",),
    paper=PAPER,
    arxiv="2411.02083",
    family="sft",
    normalisation="token",
    optional={"number_logits": "no number-token logits: the number-token term is 0 (plain cross-entropy)"},
    needs_reference=False,
    aggregation="mean",
    tags=("supervised", "token-level", "algorithm:pointwise", "feedback:demonstration", "data:off-policy"),
)
def number_token_loss(
    batch: SFTBatch | PreferenceBatch, *, ntl_weight: float = 0.5, kind: str = "mse"
) -> LossOutput:
    """Regress, Don't Guess -- A Regression-like Loss on Number Tokens for Language Models (NTL,
    arXiv:2411.02083).

    Cross-entropy treats "3" and "9" as equally wrong when the target is "4". NTL adds a regression term on the
    number-token distribution at positions whose target is a number token: the squared error of its expected
    value (NTL-MSE) or its Wasserstein-1 distance to the target value (NTL-WAS). The softmax is taken over the
    number tokens' logits only.

    Formula:
        CE  = -(1 / sum_i |y_i|) sum_{i,t} log pi(y_i,t | ...)
        p_k = softmax_k(logits restricted to the K number tokens),  v_k their values,  y the target's value
        NTL-MSE = mean over number positions of (y - sum_k p_k v_k)^2
        NTL-WAS = mean over number positions of sum_k p_k |v_k - y|
        L = CE + lambda * NTL

    Hyper-parameters:
        ntl_weight: 0.5 — lambda (the official research code's ``number_token_loss_weight``; the ``ntloss``
            package suggests 0.3).
        kind: "mse" — "mse" (the research code's default) or "was".

    Inputs: a :class:`alignkit.batches_extra.NumberTokenBatch` (number logits, values, target values). A batch
    without them has no number positions and the loss is CE alone. Source: official code
    tum-ai/number-token-loss (``number_token_loss.py``, ``wasserstein_distance_number_token_loss.py``) as
    summarised in the project catalogue.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if isinstance(batch, PreferenceBatch):
        side = batch.chosen
    elif isinstance(batch, SFTBatch):
        side = batch.side
    else:
        raise TypeError(
            f"objective 'number_token_loss' takes an SFTBatch or a PreferenceBatch, got {type(batch).__name__}"
        )
    ce = -side.seq.sum() / side.lengths.sum()
    logits = extra(batch, "number_logits")
    ntl = torch.zeros((), dtype=ce.dtype)
    positions = 0
    if logits is not None:
        terms, at = number_token_terms(
            logits, extra(batch, "number_values"), extra(batch, "target_values"), side.mask, kind
        )
        positions = int(at.sum())
        ntl = terms.sum() / max(positions, 1)
    loss = ce + ntl_weight * ntl
    return LossOutput(
        loss=loss,
        losses=loss.expand(side.seq.shape[0]),
        metrics={"nll": ce.item(), "ntl": float(ntl.detach()), "ntl/positions": float(positions)},
    )
