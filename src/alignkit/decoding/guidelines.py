"""Guideline library (Guide-Align): retrieve the guidelines relevant to an input from a library and condition
generation on them; plus the contrastive loss for training a bi-encoder retriever."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.decoding._common import DecodeContext, sample_text
from alignkit.registry import register

PAPER = "Ensuring Safe and High-Quality Outputs: A Guideline Library Approach for Language Models"

Encoder = Callable[[Sequence[str]], Tensor]

DEFAULT_GUIDELINES: tuple[str, ...] = (
    "Refuse requests that could cause physical harm, such as making weapons or drugs, and explain why.",
    "Do not reveal personal or private information about real people.",
    "When asked for medical, legal or financial advice, give general information and suggest an expert.",
    "Answer factual questions accurately and say so when you are not sure.",
    "Keep a kind, respectful and positive tone, even when the user is rude.",
    "Avoid stereotypes and discriminatory statements about any group of people.",
    "For step-by-step tasks such as arithmetic or code, show the steps clearly and check the result.",
)
TEMPLATE = "Guidelines:\n{guidelines}\n\n{query}"


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class GuidelineRetriever:
    """Top-k retrieval of guidelines for an input.

    Lexical (default): TF-IDF cosine similarity, ``idf(w) = log((1 + N) / (1 + df(w))) + 1`` over the N
    guidelines (scikit-learn's smoothed idf), term frequency raw counts, L2-normalised vectors. With an
    ``encoder`` (texts -> ``[n, d]`` embeddings, e.g. a trained bi-encoder) the score is the cosine of the
    embeddings instead.
    """

    def __init__(self, guidelines: Sequence[str], encoder: Encoder | None = None) -> None:
        guidelines = list(guidelines)
        if not guidelines:
            raise ValueError("guidelines is empty: the library needs at least one guideline")
        for i, g in enumerate(guidelines):
            if not isinstance(g, str) or not g.strip():
                raise ValueError(f"guidelines[{i}] is not a non-empty string: {g!r}")
        self.guidelines = guidelines
        self.encoder = encoder
        if encoder is None:
            docs = [Counter(_tokens(g)) for g in guidelines]
            df = Counter(w for d in docs for w in d)
            n = len(docs)
            self.idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}
            self.vocab = {w: i for i, w in enumerate(sorted(self.idf))}
            self.doc_vecs = torch.stack([self._tfidf(d) for d in docs])
        else:
            self.doc_vecs = F.normalize(encoder(guidelines).float(), dim=-1)

    def _tfidf(self, counts: Counter[str]) -> Tensor:
        v = torch.zeros(len(self.vocab))
        for w, c in counts.items():
            if w in self.vocab:
                v[self.vocab[w]] = c * self.idf[w]
        return F.normalize(v, dim=0)

    def scores(self, query: str) -> Tensor:
        """Similarity of ``query`` to every guideline, ``[N]``."""
        if self.encoder is None:
            q = self._tfidf(Counter(_tokens(query)))
        else:
            q = F.normalize(self.encoder([query]).float()[0], dim=0)
        return self.doc_vecs @ q

    def topk(self, query: str, k: int = 3, min_score: float = 0.0) -> list[tuple[int, float]]:
        """The ``k`` best (index, score) pairs, best first (lower index first on ties); pairs scoring
        ``<= min_score`` are dropped (so a query sharing no word with the library gets no guideline)."""
        if k < 0:
            raise ValueError(f"k must be >= 0; got {k}")
        s = self.scores(query).tolist()
        order = sorted(range(len(s)), key=lambda i: (-s[i], i))[:k]
        return [(i, s[i]) for i in order if s[i] > min_score]


def guided_prompt(query: str, guidelines: Sequence[str], template: str = TEMPLATE) -> str:
    """The prompt with the retrieved guidelines prepended (numbered lines in ``{guidelines}``); the plain query
    when no guideline was retrieved."""
    if not guidelines:
        return query
    body = "\n".join(f"{i + 1}. {g}" for i, g in enumerate(guidelines))
    return template.format(guidelines=body, query=query)


def retriever_info_nce(query_emb: Tensor, guideline_emb: Tensor, tau: float = 0.05) -> Tensor:
    """In-batch contrastive (InfoNCE) loss of a bi-encoder retriever on matched (input, guideline) pairs:
    row i of ``query_emb`` matches row i of ``guideline_emb``.

        L = -1/B sum_i log softmax_j(cos(q_i, g_j) / tau)[i]
    """
    if query_emb.shape != guideline_emb.shape or query_emb.dim() != 2:
        raise ValueError(
            f"query_emb and guideline_emb must both be [B, d]; got {tuple(query_emb.shape)}, "
            f"{tuple(guideline_emb.shape)}"
        )
    if tau <= 0:
        raise ValueError(f"tau must be > 0; got {tau}")
    sim = F.normalize(query_emb, dim=-1) @ F.normalize(guideline_emb, dim=-1).T / tau
    return F.cross_entropy(sim, torch.arange(len(sim), device=sim.device))


@register(
    name="guideline_library",
    verification="reconstruction",
    kind="decoder",
    family="in_context",
    aliases=("guide_align",),
    paper=PAPER,
    arxiv="2403.11838",
    tags=("decoding", "training-free", "prompting", "retrieval"),
    summary="retrieve the top-k guidelines for the input from a library and prepend them to the prompt",
)
def guideline_library(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    context: DecodeContext,
    *,
    k: int = 3,
    min_score: float = 0.0,
    template: str = TEMPLATE,
) -> list[list[str]]:
    """Ensuring Safe and High-Quality Outputs: A Guideline Library Approach for Language Models (Luo, Lin,
    ..., Guo, Gong; NAACL 2024; arXiv:2403.11838) — Guide-Align, inference stage.

    Stage 1 of the paper (a safety-trained LLM writes input-specific guidelines, deduplicated into a library
    G; a retriever r(x, g) is trained on (input, guideline) pairs) is offline; this decoder is stage 2:
    retrieve the top-k guidelines for each input and generate conditioned on them.

    Formula:
        G_x = top-k_{g in G} r(x, g)   (r > min_score),   y ~ pi(. | template(G_x, x))
        lexical r = cos(tfidf(x), tfidf(g));  embedding r = cos(E(x), E(g))
        retriever training (optional): L = -1/B sum_i log softmax_j(cos(E(x_i), E(g_j)) / tau)[i]

    Hyper-parameters:
        k: guidelines retrieved per input (default 3; UNVERIFIED, the paper's k was not read).
        min_score: drop guidelines with similarity <= this (default 0.0, ours: keep those sharing a
            word/direction).
        template: prompt template with ``{guidelines}`` and ``{query}`` (default ``TEMPLATE``, ours; UNVERIFIED).

    The library is ``context.extra['guidelines']`` (a list of strings; default: a small built-in general
    library ``DEFAULT_GUIDELINES``); ``context.extra['guideline_encoder']`` (texts -> ``[n, d]`` tensor) switches
    from lexical TF-IDF to embedding retrieval. Source: catalogue entry #77 (abstract + summary: two stages,
    retrieval of input-specific guidelines, optional SFT stage "Labrador"). UNVERIFIED: the paper's retriever
    architecture and loss (InfoNCE here is an assumption), its prompt template and k.
    """
    library = context.extra.get("guidelines") or DEFAULT_GUIDELINES
    retriever = GuidelineRetriever(library, encoder=context.extra.get("guideline_encoder"))
    full = [
        guided_prompt(p, [retriever.guidelines[i] for i, _ in retriever.topk(p, k, min_score)], template)
        for p in prompts
    ]
    return sample_text(model, tokenizer, full, **context.sampling)
