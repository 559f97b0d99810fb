"""TraceAlign's Belief Conflict Index: spans of a generation found verbatim in the training corpus, scored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alignkit.registry import register


class SuffixArray:
    """Suffix array over a token corpus (documents joined with a separator id absent from the tokens)."""

    def __init__(self, documents: Sequence[Sequence[int]], separator: int = -1) -> None:
        if not documents:
            raise ValueError("documents: needs at least one document")
        self.text: list[int] = []
        self.doc_of: list[int] = []
        for d, doc in enumerate(documents):
            self.text.extend(doc)
            self.doc_of.extend([d] * len(doc))
            self.text.append(separator)
            self.doc_of.append(d)
        self.sa = sorted(range(len(self.text)), key=lambda i: self.text[i:])

    def _bound(self, pattern: list[int], upper: bool) -> int:
        lo, hi = 0, len(self.sa)
        m = len(pattern)
        while lo < hi:
            mid = (lo + hi) // 2
            s = self.text[self.sa[mid] : self.sa[mid] + m]
            if s < pattern or (upper and s == pattern):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def find(self, pattern: Sequence[int]) -> list[int]:
        """Sorted start positions of every occurrence of ``pattern``."""
        p = list(pattern)
        return sorted(self.sa[self._bound(p, False) : self._bound(p, True)])

    def count(self, pattern: Sequence[int]) -> int:
        p = list(pattern)
        return self._bound(p, True) - self._bound(p, False)


@dataclass
class Span:
    start: int
    end: int
    count: int
    documents: list[int]
    bci: float


def belief_conflict_spans(
    corpus: SuffixArray,
    generation: Sequence[int],
    token_logps_aligned: Sequence[float],
    *,
    min_len: int = 4,
) -> list[Span]:
    """TRACEALIGN -- Tracing the Drift: Attributing Alignment Failures to Training-Time Belief Sources in LLMs
    (Das, Jain, Chadha, 2025; arXiv:2508.02063) — the Belief Conflict Index of generated spans.

    Finds the maximal spans of a generation (length >= ``min_len``) that occur verbatim in the training corpus
    (suffix-array exact match), and scores each by how much the aligned policy disagrees with it.

    Formula:
        spans: maximal [i, j) with generation[i:j] in corpus and j - i >= min_len (greedy, left to right)
        BCI(span) = -(1 / |span|) * sum_{t in span} log pi_aligned(y_t | y_<t)     (PLACEHOLDER)

    Hyper-parameters:
        corpus: ``SuffixArray`` over the training documents (token ids).
        generation: the generated token ids.
        token_logps_aligned: log pi_aligned of each generated token (same length as ``generation``).
        min_len: shortest span reported (default 4; our choice).

    Source: the paper's abstract (BCI "quantifies semantic inconsistency between generated spans and aligned
    policies, based on retrieved training documents using suffix-array matching"; TraceShield refuses when a
    span's BCI exceeds a threshold). UNVERIFIED: the BCI definition — the aligned-policy surprisal above is a
    placeholder standing in for the paper's formula; the retrieval part (exact suffix-array matching) is as
    described. The authors' code (anonymous.4open.science) was not reachable.
    """
    if len(generation) != len(token_logps_aligned):
        raise ValueError(
            f"token_logps_aligned: length {len(token_logps_aligned)} != generation length {len(generation)}"
        )
    if min_len < 1:
        raise ValueError(f"min_len must be >= 1, got {min_len}")
    gen = list(generation)
    spans: list[Span] = []
    i = 0
    while i < len(gen):
        j = i
        while j < len(gen) and corpus.count(gen[i : j + 1]) > 0:
            j += 1
        if j - i >= min_len:
            pos = corpus.find(gen[i:j])
            lp = token_logps_aligned[i:j]
            spans.append(Span(i, j, len(pos), sorted({corpus.doc_of[p] for p in pos}), -sum(lp) / len(lp)))
            i = j
        else:
            i += 1
    return spans


register(
    name="belief_conflict_index",
    kind="diagnostic",
    family="harmful_finetuning",
    paper="TRACEALIGN -- Tracing the Drift: Attributing Alignment Failures to Training-Time Belief Sources in LLMs",
    arxiv="2508.02063",
    tags=("safety", "provenance", "unverified-formula"),
    summary="suffix-array spans of a generation found in the training corpus, scored by aligned-policy surprisal",
)(belief_conflict_spans)
