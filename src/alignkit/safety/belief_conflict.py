"""TraceAlign (arXiv:2508.02063): spans of a generation found verbatim in the training corpus (suffix array), and
the Belief Conflict Index of a span, BCI(s) = -sum_t log P_train(t) (``belief_conflict_index``, registered as a
reconstruction: the paper's text could not be read here; see its docstring for the sources).

``corpus_spans`` attaches the aligned policy's mean surprisal to each span as alignkit's own score (not the
BCI); ``trace_shield`` is the TraceShield refusal rule on top of the BCI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

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
    to training documents by suffix-array search. The score attached to each span here is alignkit's own (the
    aligned policy's surprisal); the paper's Belief Conflict Index is ``belief_conflict_index``.

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


def unigram_probs(
    documents: Sequence[Sequence[int]], vocab_size: int, *, default_prob: float = 1e-9
) -> Tensor:
    """P_train(t): each token id's share of the training corpus's tokens; ids never seen get ``default_prob``
    (the co-author repository's ``BeliefConflictIndex(default_prob=1e-9)``; see ``belief_conflict_index``)."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for d, doc in enumerate(documents):
        for t in doc:
            if not 0 <= t < vocab_size:
                raise ValueError(f"documents[{d}]: token id {t} outside [0, {vocab_size})")
            counts[t] += 1
    total = counts.sum()
    if total == 0:
        raise ValueError("documents: no tokens")
    return torch.where(counts > 0, counts / total, torch.full_like(counts, default_prob))


def belief_conflict_index(token_probs: Tensor, mask: Tensor | None = None, *, eps: float = 1e-12) -> Tensor:
    """Belief Conflict Index of a span (TraceAlign): the span's rarity under the training distribution.

    TRACEALIGN -- Tracing the Drift: Attributing Alignment Failures to Training-Time Belief Sources in LLMs
    (Das, Jain, Chadha, 2025; arXiv:2508.02063). The sum of the span's tokens' negative log unigram
    probabilities under the (pre-)training corpus: a rare, specific span that the model reproduces verbatim
    scores high. TraceShield refuses a generation when a span matched in the corpus has BCI > tau
    (``trace_shield``).

    Reconstruction: the paper's text could not be read here (only its abstract). The formula is taken from a
    reading note that quotes the paper (``BCI(s) = -Sigma log P_train(t)``, "a sum of negative log unigram
    probabilities"; tau = 20) and agrees with ``bci.py`` of github.com/vinija/tracealign (an account of the
    co-author Vinija Jain; its README is empty, so whether it is the official code is unverified, and its file
    does not run as stored: mixed indentation). The paper's frequency filter on matches (M(q) <= 3) and its
    per-token density / KL variants are not implemented.

    Formula:
        BCI(s) = - sum_{j in s} log(P_train(t_j) + eps)          (masked tokens skipped; one value per row)
        P_train(t) = count(t) / total tokens of the corpus       (``unigram_probs``; unseen ids: default_prob)

    Hyper-parameters:
        eps: 1e-12 — added inside the log, as ``bci.py``'s ``-math.log(p + 1e-12)`` (co-author repository;
            there an unseen token scores -log(default_prob) without eps, here -log(default_prob + eps), 1e-3
            nats more at default_prob = 1e-9).

    Args:
        token_probs: P_train of each span token, (..., L), in [0, 1].
        mask: optional (..., L), 1 for the span's tokens.
    """
    p = torch.as_tensor(token_probs)
    if not torch.is_floating_point(p):
        raise ValueError("token_probs: must be floating-point probabilities")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(
            "token_probs: probabilities must lie in [0, 1] (pass P_train, not log-probabilities)"
        )
    nll = -torch.log(p + eps)
    if mask is not None:
        m = torch.as_tensor(mask)
        if m.shape != p.shape:
            raise ValueError(f"mask: shape {tuple(m.shape)} != token_probs shape {tuple(p.shape)}")
        nll = nll * m.to(nll.dtype)
    return nll.sum(-1)


register(
    name="belief_conflict_index",
    verification="reconstruction",
    kind="diagnostic",
    family="harmful_finetuning",
    paper="TRACEALIGN -- Tracing the Drift: Attributing Alignment Failures to Training-Time Belief Sources in LLMs",
    arxiv="2508.02063",
    tags=("safety", "provenance"),
    summary="BCI of a span: -sum log P_train(t), its rarity under the training corpus (TraceAlign)",
)(belief_conflict_index)


def trace_shield(
    corpus: SuffixArray,
    generation: Sequence[int],
    p_train: Tensor,
    *,
    tau: float = 20.0,
    window: int = 8,
) -> list[tuple[int, float]]:
    """TraceShield: the windows of ``generation`` found verbatim in ``corpus`` whose BCI exceeds ``tau``, as
    (start, BCI); the generation is refused when the list is non-empty.

    tau: 20.0 — the paper's ROC-calibrated threshold (as quoted by the reading note; paper text not read here).
    window: 8 — span length, ``TraceShield(window_size=8)`` in the co-author repository's ``traceshield.py``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    gen = list(generation)
    p = torch.as_tensor(p_train)
    out: list[tuple[int, float]] = []
    for i in range(len(gen) - window + 1):
        w = gen[i : i + window]
        if corpus.count(w) > 0:
            bci = float(belief_conflict_index(p[torch.tensor(w)]))
            if bci > tau:
                out.append((i, bci))
    return out
