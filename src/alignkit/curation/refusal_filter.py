"""The Poison of Alignment: remove refusal-style "aligned" answers from instruction-tuning data before SFT."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from alignkit.curation._common import field_str
from alignkit.registry import register

#: Our default list of refusal / "as an AI" phrases (case-insensitive regexes). Not the paper's list: how the paper
#: detected aligned answers was not verified.
DEFAULT_REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bas an ai\b",
    r"\bas a language model\b",
    r"\bas an? (?:ai )?language model\b",
    r"\bi(?: am|'m) (?:just )?an? (?:ai|artificial intelligence)\b",
    r"\bi(?: am|'m) (?:sorry|afraid),? (?:but )?i (?:cannot|can't|can not|am unable to|won't)\b",
    r"\bi (?:cannot|can't|can not) (?:help|assist|provide|fulfill|comply)\b",
    r"\bi(?: am|'m) (?:not able|unable) to (?:help|assist|provide|fulfill|comply)\b",
    r"\bi (?:do not|don't) have (?:personal )?(?:opinions|feelings|emotions|beliefs)\b",
    r"\b(?:it is|it's) not appropriate\b",
    r"\bagainst (?:my|openai's) (?:programming|guidelines|policies)\b",
    r"\bopenai\b",
)


def is_refusal(text: str, patterns: Sequence[str] = DEFAULT_REFUSAL_PATTERNS) -> bool:
    """True when ``text`` matches any of ``patterns`` (case-insensitive regexes)."""
    return any(re.search(p, text, flags=re.IGNORECASE) for p in patterns)


def filter_refusals(
    rows: Sequence[dict[str, Any]],
    *,
    field: str = "response",
    patterns: Sequence[str] = DEFAULT_REFUSAL_PATTERNS,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Poison of Alignment (Bekbayev et al., 2023; arXiv:2308.13449): clean an instruction-tuning set of
    refusal-style "aligned" answers ("As an AI language model, I cannot ...") before SFT; the paper reports
    that such answers in the SFT data lower reasoning benchmarks (BBH, MMLU, HumanEval, DROP) by 4-33%.

    Formula:
        kept    = { r in rows : no pattern matches r[field] }
        removed = rows \\ kept

    Hyper-parameters:
        field: "response" — the answer field checked (use "completion"/"chosen" for other formats).
            Operational (alignkit's interface, not a paper hyper-parameter).
        patterns: DEFAULT_REFUSAL_PATTERNS — case-insensitive regexes (our list; see below).

    Returns ``(kept, removed)`` in input order. Idempotent: filtering ``kept`` again removes nothing.
    Unverified: the paper's detection method (phrase list vs. classifier) and its exact list were not read (only
    the abstract); the default patterns are ours.
    """
    if not patterns:
        raise ValueError("patterns is empty")
    for p in patterns:
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"patterns: {p!r} is not a valid regex ({e})") from None
    kept: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        text = field_str(row, i, field, allow_empty=True)
        (removed if is_refusal(text, patterns) else kept).append(row)
    return kept, removed


register(
    name="poison_of_alignment",
    verification="reconstruction",
    kind="data_rule",
    family="curation",
    paper="The Poison of Alignment",
    arxiv="2308.13449",
    aliases=("filter_refusals",),
    tags=("sft", "data-filter", "refusal"),
    summary="drop refusal-style 'as an AI language model' answers from SFT data",
)(filter_refusals)
