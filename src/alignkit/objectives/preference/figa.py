"""FIGA: token-weighted contrastive SFT on (initial, revised) response pairs aligned by edit operations."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alignkit.batches_extra import extra
from alignkit.objectives.preference._pairwise import pair_terms, preference_metrics
from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch

PAPER = "Beyond Imitation: Leveraging Fine-grained Quality Signals for Alignment"


def edit_masks(
    initial_ids: Sequence[int], revised_ids: Sequence[int], mark_revised_eos: bool = True
) -> tuple[list[bool], list[bool]]:
    """Token labels from a minimum-cost Levenshtein alignment of ``initial_ids`` -> ``revised_ids``.

    Returns ``(initial_mask, revised_mask)``: initial tokens that are deleted or substituted, and revised tokens
    that are inserted or substituted (FIGA's official code marks these with ``Levenshtein.editops``; it also
    always marks the revision's last token, its EOS, which ``mark_revised_eos`` reproduces). Among alignments of
    equal cost this one prefers substitutions, then deletions — python-Levenshtein may pick another of equal
    cost, so individual positions can differ on ties; the number of edits never does.
    """
    a, b = list(initial_ids), list(revised_ids)
    n, m = len(a), len(b)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    init_mask, rev_mask = [False] * n, [False] * m
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (a[i - 1] != b[j - 1]):
            if a[i - 1] != b[j - 1]:
                init_mask[i - 1] = rev_mask[j - 1] = True
            i, j = i - 1, j - 1
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            init_mask[i - 1] = True
            i -= 1
        else:
            rev_mask[j - 1] = True
            j -= 1
    if mark_revised_eos and m:
        rev_mask[-1] = True
    return init_mask, rev_mask


@register_objective(
    name="figa",
    verification="paper-formula",
    paper=PAPER,
    arxiv="2311.04072",
    family="preference",
    needs_reference=False,
    aggregation="sum",
    batch_type=PreferenceBatch,
    optional={"edit_masks": "no edit masks: every token counts as edited (FIGA's limiting case)"},
    tags=(
        "paired",
        "reference-free",
        "token-level",
        "algorithm:pairwise",
        "feedback:revision",
        "data:off-policy",
    ),
)
def figa(
    batch: PreferenceBatch,
    *,
    positive_weight: float = 1.0,
    negative_weight: float = 0.5,
    negative_band: tuple[float, float] = (0.6, 1.0),
) -> LossOutput:
    """Beyond Imitation: Leveraging Fine-grained Quality Signals for Alignment (FIGA, arXiv:2311.04072).

    Chosen = the revised response y~, rejected = the initial response y^. Tokens the revision inserted or
    substituted are imitated; tokens of the initial response that were deleted or substituted are pushed down,
    but only while their cross-entropy lies in ``negative_band`` (chosen without gradient); unchanged tokens get
    weight 0. The loss is the token mean over the weighted tokens of the whole batch.

    Formula:
        c_t = -log pi(y_t | x, y_<t)
        w_t = +a             on inserted/substituted tokens of y~ (and its EOS)
        w_t = -b             on deleted/substituted tokens of y^ with lo <= c_t <= hi
        w_t = 0              otherwise
        L = sum_{i,t} w_t c_t / #{(i, t): w_t != 0}

    Hyper-parameters:
        positive_weight: 1.0 — a (official code ``cook_ratio``).
        negative_weight: 0.5 — b (official code ``cook_ratio2 = -0.5``).
        negative_band: (0.6, 1.0) — (lo, hi), hard-coded ``threshold_lower/upper`` in the official code.

    Inputs: an :class:`alignkit.batches_extra.EditedPreferenceBatch` carries the edit masks (build them with
    :func:`edit_masks`). On a plain ``PreferenceBatch`` every token counts as edited — the alignment of two
    responses that share no token. Source: the official code RUCAIBox/FIGA (``train.py``, the "contra" branch of
    ``modeling_llama.py``) as summarised in the project catalogue; the band and weights are the code's values.
    """
    lo, hi = negative_band
    if lo > hi:
        raise ValueError(f"negative_band must be (lo, hi) with lo <= hi; got {negative_band}")
    batch.require_token_level("figa (token weights)")
    t = pair_terms(batch, needs_reference=False, why="objective 'figa'")
    c, r = batch.chosen, batch.rejected
    pos = c.mask.bool()
    neg = r.mask.bool()
    cm, rm = extra(batch, "chosen_edit_mask"), extra(batch, "rejected_edit_mask")
    if cm is not None:
        pos = pos & cm.bool()
    if rm is not None:
        neg = neg & rm.bool()
    with torch.no_grad():
        ce = -r.tokens
        neg = neg & (ce >= lo) & (ce <= hi)
    zero = torch.zeros((), dtype=c.tokens.dtype)
    pos_terms = torch.where(pos, -positive_weight * c.tokens, zero).sum(-1)
    neg_terms = torch.where(neg, negative_weight * r.tokens, zero).sum(-1)  # -b * c_t = b * log pi
    count = (pos.sum() * (positive_weight != 0) + neg.sum() * (negative_weight != 0)).clamp_min(1)
    per_example = (pos_terms + neg_terms) / count
    losses = per_example * batch.batch_size  # so that losses.mean() == loss
    metrics = preference_metrics(t.chosen_logps, t.rejected_logps, t)
    metrics["figa/positive_tokens"] = float(pos.sum())
    metrics["figa/negative_tokens"] = float(neg.sum())
    return LossOutput(loss=per_example.sum(), losses=losses, metrics=metrics)
