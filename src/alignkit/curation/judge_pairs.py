"""Preference pairs built by an automatic judge: score several sampled responses per prompt with a factuality
scorer, pair the best against the worst (CheXalign / "Preference Fine-Tuning for Factuality in Chest X-Ray
Interpretation Models Without Human Feedback")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from alignkit.curation._common import field_str
from alignkit.registry import register


def judge_pairs(
    rows: Sequence[dict[str, Any]],
    scorer: Callable[[dict[str, Any], str], float],
    *,
    min_gap: float = 0.0,
    responses_field: str = "responses",
) -> list[dict[str, Any]]:
    """Preference Fine-Tuning for Factuality in Chest X-Ray Interpretation Models Without Human Feedback
    (Hein et al., 2024; arXiv:2410.07025, published as CheXalign): preference pairs without human labels —
    each prompt's sampled responses are scored by a reference-based factuality judge (GREEN in the paper) and the
    highest-scored response becomes ``chosen``, the lowest-scored ``rejected``; any DAA (DPO, IPO, KTO, ORPO,
    SimPO) then trains on them.

    Formula:
        s_j = scorer(row, y_j)        for the sampled responses y_1..y_K of a prompt
        chosen = y_argmax s,  rejected = y_argmin s;   drop the prompt if s_max - s_min <= min_gap

    Hyper-parameters:
        min_gap: 0.0 — smallest score gap that makes a pair (ours: 0 drops only exact ties).
        responses_field: "responses" — the list of sampled responses of each row.
            Operational (alignkit's interface, not a paper hyper-parameter).

    ``scorer(row, response) -> float`` (higher = more factual) gets the whole row, so a reference-based judge
    can read e.g. ``row["reference"]``. Ties in argmax/argmin go to the earliest response. Output rows keep the
    other fields and add ``prompt``, ``chosen``, ``rejected``, ``chosen_score``, ``rejected_score``.
    Unverified: the number of samples per image and whether the paper used best-vs-worst or another pairing rule
    (the catalog lists it as unverified); best-vs-worst is our default.
    """
    if not callable(scorer):
        raise ValueError("scorer must be callable (row, response) -> float")
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        prompt = field_str(row, i, "prompt")
        resp = row.get(responses_field)
        if not isinstance(resp, (list, tuple)) or len(resp) < 2:
            raise ValueError(f"row {i}: field {responses_field!r} must be a list of >= 2 responses")
        for j, r in enumerate(resp):
            if not isinstance(r, str):
                raise ValueError(f"row {i}: field {responses_field!r}[{j}] must be a string")
        scores = []
        for j, r in enumerate(resp):
            s = scorer(row, r)
            try:
                s = float(s)
            except (TypeError, ValueError):
                raise ValueError(
                    f"row {i}: scorer returned {s!r} for {responses_field}[{j}], not a number"
                ) from None
            if s != s or s in (float("inf"), float("-inf")):
                raise ValueError(f"row {i}: scorer returned non-finite {s} for {responses_field}[{j}]")
            scores.append(s)
        hi = max(range(len(scores)), key=lambda j: (scores[j], -j))
        lo = min(range(len(scores)), key=lambda j: (scores[j], j))
        if scores[hi] - scores[lo] <= min_gap:
            continue
        rest = {k: v for k, v in row.items() if k != responses_field}
        out.append(
            {
                **rest,
                "prompt": prompt,
                "chosen": resp[hi],
                "rejected": resp[lo],
                "chosen_score": scores[hi],
                "rejected_score": scores[lo],
            }
        )
    return out


register(
    name="judge_pairs",
    verification="reconstruction",
    kind="data_rule",
    family="curation",
    paper="Preference Fine-Tuning for Factuality in Chest X-Ray Interpretation Models Without Human Feedback",
    arxiv="2410.07025",
    aliases=("chexalign_pairs",),
    tags=("preference", "pair-construction", "llm-as-judge"),
    summary="best-vs-worst preference pairs from a factuality scorer's scores of sampled responses",
)(judge_pairs)
