"""The retrieval half of TraceAlign: spans of a generation found verbatim in the training corpus (suffix array).

TraceAlign's Belief Conflict Index (arXiv:2508.02063) is NOT implemented: its definition could not be read
(only the abstract was reachable; the authors' code is at anonymous.4open.science), so nothing here is
registered as the paper's method. The spans carry the aligned policy's mean surprisal as alignkit's own
score, named as ours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
    surprisal: float  # ours: -(1/|span|) sum log pi_aligned over the span; NOT TraceAlign's BCI


def corpus_spans(
    corpus: SuffixArray,
    generation: Sequence[int],
    token_logps_aligned: Sequence[float],
    *,
    min_len: int = 4,
) -> list[Span]:
    """Spans of a generation that occur verbatim in a training corpus, with the aligned policy's surprisal.

    The retrieval step described by TRACEALIGN -- Tracing the Drift: Attributing Alignment Failures to
    Training-Time Belief Sources in LLMs (Das, Jain, Chadha, 2025; arXiv:2508.02063): generated spans matched
    to training documents by suffix-array search. Its Belief Conflict Index ("semantic inconsistency between
    generated spans and aligned policies") is not implemented — the paper's formula was not available — and
    this function is not registered as it. The score attached to each span is alignkit's own.

    Formula:
        spans: maximal [i, j) with generation[i:j] in corpus and j - i >= min_len (greedy, left to right)
        surprisal(span) = -(1 / |span|) * sum_{t in span} log pi_aligned(y_t | y_<t)      (ours)

    Hyper-parameters:
        corpus: ``SuffixArray`` over the training documents (token ids).
        generation: the generated token ids.
        token_logps_aligned: log pi_aligned of each generated token (same length as ``generation``).
        min_len: 4 — shortest span reported (ours, because shorter matches are mostly common n-grams).
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
