from __future__ import annotations

import math

import pytest
import torch

import alignkit as ak
from alignkit.decoding import DecodeContext, DeRaProcessor, dera, dera_logits, next_token_logits, sample_text

PROMPTS = ["hi", "a longer prompt"]


def test_worked_example():
    # aligned [2, 0], ref [0, 0], lam = 0.5  ->  softmax([1, 0]) = [0.7311, 0.2689]
    p = torch.softmax(dera_logits(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]), 0.5), -1)
    assert p.tolist() == pytest.approx([1 / (1 + math.exp(-1)), 1 / (1 + math.e)], abs=1e-6)
    # extrapolation lam = 2: softmax(2 z_a - z_ref)
    za, zr = torch.tensor([1.0, -0.5, 0.3]), torch.tensor([0.2, 0.1, -1.0])
    got = torch.softmax(dera_logits(za, zr, 2.0), -1)
    assert torch.allclose(got, torch.softmax(2 * za - zr, -1), atol=1e-6)


def test_endpoints_are_exact_model_distributions(aligned, ref, tok):
    ids = torch.tensor([[0, 0, 1, 40, 50], [1, 41, 42, 43, 44]])  # left-padded batch
    za = next_token_logits(aligned, ids, 0)
    zr = next_token_logits(ref, ids, 0)
    p1 = DeRaProcessor(ref, 1.0, 0)(ids, za.clone())
    p0 = DeRaProcessor(ref, 0.0, 0)(ids, za.clone())
    assert torch.allclose(p1, torch.log_softmax(za, -1), atol=1e-6)
    assert torch.allclose(p0, torch.log_softmax(zr, -1), atol=1e-6)
    # the left-padded row equals the unpadded run of the same tokens
    alone = next_token_logits(ref, ids[:1, 2:], 0)
    assert torch.allclose(zr[:1], alone, atol=1e-5)


def test_greedy_lam0_decodes_like_the_reference(aligned, ref, tok):
    greedy = dict(max_new_tokens=6, temperature=0.0)
    ctx = DecodeContext(ref_model=ref, sampling=greedy)
    assert dera(aligned, tok, PROMPTS, ctx, lam=0.0) == sample_text(ref, tok, PROMPTS, **greedy)
    assert dera(aligned, tok, PROMPTS, ctx, lam=1.0) == sample_text(aligned, tok, PROMPTS, **greedy)


def test_seeded_and_registered(aligned, ref, tok, sampling):
    ctx = DecodeContext(ref_model=ref, sampling=sampling)
    a = dera(aligned, tok, PROMPTS, ctx, lam=0.5)
    assert a == dera(aligned, tok, PROMPTS, ctx, lam=0.5)
    assert len(a) == 2 and all(len(s) == 2 for s in a)
    c = ak.get("dera")
    assert c.kind == "decoder" and c.defaults == {"lam": 1.0}
    with pytest.raises(ValueError, match="ref_model"):
        dera(aligned, tok, PROMPTS, DecodeContext(), lam=0.5)
