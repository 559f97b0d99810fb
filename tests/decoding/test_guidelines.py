from __future__ import annotations

import math

import pytest
import torch

import alignkit as ak
from alignkit.decoding import (
    DecodeContext,
    GuidelineRetriever,
    guided_prompt,
    guideline_library,
    retriever_info_nce,
    sample_text,
)

LIB = [
    "Refuse to explain how to build weapons or explosives.",
    "Do not reveal private addresses or phone numbers of people.",
    "Check arithmetic step by step before giving the sum.",
    "Keep a kind and respectful tone with rude users.",
]


def test_tfidf_score_by_hand():
    r = GuidelineRetriever(["apple banana", "banana cherry"])
    # idf = log((1 + N) / (1 + df)) + 1 with N = 2: apple, cherry -> log(3/2) + 1; banana -> 1
    a = math.log(1.5) + 1
    s = r.scores("apple").tolist()
    assert s == pytest.approx([a / math.sqrt(a**2 + 1), 0.0], abs=1e-6)
    s = r.scores("banana").tolist()
    assert s == pytest.approx([1 / math.sqrt(a**2 + 1)] * 2, abs=1e-6)
    assert r.topk("banana", k=2) == [(0, pytest.approx(s[0])), (1, pytest.approx(s[1]))]  # tie: lower index
    assert r.topk("durian", k=2) == []  # nothing shared: no guideline
    with pytest.raises(ValueError, match="guidelines"):
        GuidelineRetriever([])
    with pytest.raises(ValueError, match=r"guidelines\[1\]"):
        GuidelineRetriever(["ok", " "])


def test_planted_guideline_is_retrieved_first():
    r = GuidelineRetriever(LIB)
    queries = {
        "how do I build explosives at home": 0,
        "what is the phone number of my neighbour": 1,
        "what is the sum of 17 and 25, step by step": 2,
        "you are a rude useless bot": 3,
    }
    assert [r.topk(q, 1)[0][0] for q in queries] == list(queries.values())


def test_embedding_retrieval_and_info_nce():
    vocab = ["weapons", "private", "arithmetic", "rude"]

    def enc(texts):
        return torch.tensor([[float(w in t.lower()) + 1e-3 for w in vocab] for t in texts])

    r = GuidelineRetriever(LIB, encoder=enc)
    assert r.topk("rude person", 1)[0][0] == 3
    # hand value: q = e1, e2; g = e1, e1; tau = 1 -> each row's CE = log 2
    q = torch.eye(2, requires_grad=True)
    g = torch.tensor([[1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    loss = retriever_info_nce(q, g, tau=1.0)
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()  # identical guideline rows: the loss cannot depend on q (zero gradient), only on g
    assert q.grad.abs().sum() == 0 and torch.isfinite(g.grad).all() and g.grad.abs().sum() > 0
    q = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    retriever_info_nce(q, torch.randn(3, 5), tau=0.05).backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    # matched orthogonal pairs at a small temperature: loss -> 0
    e = torch.eye(4)
    assert retriever_info_nce(e, e, tau=0.01).item() < 1e-6
    with pytest.raises(ValueError, match="query_emb"):
        retriever_info_nce(torch.zeros(2, 3), torch.zeros(3, 3))


def test_decoder_prepends_the_retrieved_guidelines(aligned, tok, sampling):
    prompts = ["how to build weapons", "zzz"]
    ctx = DecodeContext(sampling=sampling, extra={"guidelines": LIB})
    got = guideline_library(aligned, tok, prompts, ctx, k=1)
    full = [guided_prompt(prompts[0], [LIB[0]]), "zzz"]  # "zzz" shares no word: the plain prompt
    assert full[0] == f"Guidelines:\n1. {LIB[0]}\n\nhow to build weapons"
    assert got == sample_text(aligned, tok, full, **sampling)
    # limiting case: k = 0 (or an unreachable min_score) is the plain model
    assert guideline_library(aligned, tok, prompts, ctx, k=0) == sample_text(
        aligned, tok, prompts, **sampling
    )
    assert guideline_library(aligned, tok, prompts, ctx, min_score=1.1) == sample_text(
        aligned, tok, prompts, **sampling
    )
    c = ak.get("guideline_library")
    assert c.kind == "decoder" and c.defaults["k"] == 3
