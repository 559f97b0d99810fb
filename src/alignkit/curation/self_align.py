"""ISARA — instruction-free self-alignment from a few samples: retrieve related examples, let the model write new
(question, answer) pairs in context, filter and dedupe them, fine-tune, repeat."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from alignkit.curation._common import field_str
from alignkit.registry import register


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def retrieve_neighbours(seed_emb: np.ndarray, pool_emb: np.ndarray, *, k: int = 4) -> list[list[int]]:
    """Indices of the ``k`` pool rows most cosine-similar to each seed row (ties broken by index)."""
    a, b = np.asarray(seed_emb, dtype=np.float64), np.asarray(pool_emb, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"seed and pool embeddings must be (n, d) with the same d; got {a.shape}, {b.shape}")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    sim = a @ b.T
    k = min(k, b.shape[0])
    return [sorted(range(b.shape[0]), key=lambda j, r=r: (-r[j], j))[:k] for r in sim]


def self_align_round(
    seed_rows: Sequence[dict[str, Any]],
    pool_rows: Sequence[dict[str, Any]],
    embed_fn: Callable[[list[str]], np.ndarray],
    generate_fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    *,
    k_icl: int = 4,
    filter_fn: Callable[[dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Human-Instruction-Free LLM Self-Alignment with Limited Samples (ISARA; Guo et al., 2024;
    arXiv:2401.06785) — the data construction of one round: for each of the few (< 100) seed samples of the
    target domain, retrieve the ``k_icl`` most similar (question, answer) examples from a pool, have the current
    LLM generate new samples with them as in-context examples (no hand-written instructions or principles),
    then filter and dedupe. The SFT step (NLL on the new rows) and the next round with the tuned model are the
    trainer's job.

    Formula:
        N(s) = top-k_icl_{p in pool} cos(e(s), e(p))              e = embed_fn(prompt)
        D_new = dedupe( { g in generate_fn([s] + N(s)) : filter_fn(g) } for s in seeds )
                minus anything already in seeds or pool (by normalised prompt)

    Hyper-parameters:
        k_icl: 4 — in-context examples per generation (ours; the paper's value is unverified).
        filter_fn: None — extra quality filter on generated rows (keeps all by default).
            Operational (alignkit's interface, not a paper hyper-parameter).

    Rows have ``prompt`` and ``response``. ``embed_fn(list of prompts) -> (n, d)``; ``generate_fn(examples)``
    returns new rows (the model call stays outside). Output rows get ``source="self_align"``.
    Unverified: the retriever, k, the filter/dedupe rule and samples per round (only the abstract and summaries
    were read; no official code found).
    """
    if k_icl < 1:
        raise ValueError(f"k_icl must be >= 1, got {k_icl}")
    seeds = list(seed_rows)
    pool = list(pool_rows)
    if not seeds:
        raise ValueError("seed_rows is empty")
    seed_prompts = [field_str(r, i, "prompt") for i, r in enumerate(seeds)]
    for i, r in enumerate(seeds):
        field_str(r, i, "response")
    pool_prompts = [field_str(r, i, "prompt") for i, r in enumerate(pool)]
    for i, r in enumerate(pool):
        field_str(r, i, "response")
    neigh = (
        retrieve_neighbours(embed_fn(seed_prompts), embed_fn(pool_prompts), k=k_icl)
        if pool
        else [[] for _ in seeds]
    )
    seen = {_norm(p) for p in seed_prompts + pool_prompts}
    out: list[dict[str, Any]] = []
    for si, s in enumerate(seeds):
        examples = [s] + [pool[j] for j in neigh[si]]
        generated = generate_fn(examples)
        if not isinstance(generated, list):
            raise ValueError(f"generate_fn must return a list of rows, got {type(generated).__name__}")
        for gi, g in enumerate(generated):
            try:
                p = field_str(g, gi, "prompt")
                field_str(g, gi, "response")
            except ValueError as e:
                raise ValueError(f"generated for seed {si}: {e}") from None
            if _norm(p) in seen or (filter_fn is not None and not filter_fn(g)):
                continue
            seen.add(_norm(p))
            out.append({**g, "source": "self_align", "seed": si})
    return out


register(
    name="isara",
    verification="reconstruction",
    kind="data_rule",
    family="curation",
    paper="Human-Instruction-Free LLM Self-Alignment with Limited Samples",
    arxiv="2401.06785",
    aliases=("self_align_round",),
    tags=("sft", "data-construction", "self-alignment"),
    summary="one round of retrieval + in-context self-generation + dedupe from a few seed samples",
)(self_align_round)
