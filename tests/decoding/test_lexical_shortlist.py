from __future__ import annotations

import pytest
import torch

from alignkit.decoding import DecodeContext, sample_text
from alignkit.decoding.lexical_shortlist import (
    ShortlistProcessor,
    build_shortlist,
    consensus_rerank,
    lexical_shortlist,
    ngram_overlap,
)


def test_shortlist_by_hand():
    table = {5: {10: 0.5, 11: 0.3, 12: 0.2}, 6: {12: 0.9, 13: 0.1}}
    assert build_shortlist([5, 6], table, k=1) == {10, 12}
    assert build_shortlist([5, 7], table, k=2, frequent_ids=[2]) == {2, 10, 11}
    out = ShortlistProcessor({1, 3})(torch.zeros(1, 2), torch.arange(5.0).repeat(2, 1))
    assert out[0].tolist() == [float("-inf"), 1.0, float("-inf"), 3.0, float("-inf")]
    assert torch.softmax(out, -1)[:, [0, 2, 4]].sum() == 0


def test_rerank_by_hand_and_limits():
    assert ngram_overlap("ab", "ab") == 1.0 and ngram_overlap("ab", "cd") == 0.0
    # unigrams: 2*1/4; bigrams: 0/2  ->  0.25
    assert ngram_overlap("ab", "ac") == pytest.approx(0.25)
    nbest = ["xyz", "abc", "abd", "abc"]
    assert consensus_rerank(nbest)[0] in (1, 3) and consensus_rerank(nbest)[-1] == 0
    assert consensus_rerank(nbest, [0.1, 0.4, 0.3, 0.2], weight=0.0) == [1, 2, 3, 0]
    assert consensus_rerank(["only"]) == [0]


def test_decoder_respects_shortlist_and_full_vocab_is_identity(aligned, tok):
    allowed = [tok.convert_tokens_to_ids(c) for c in "abc"]
    src = tok("hi")["input_ids"]
    table = {s: {t: 1.0 for t in allowed} for s in src}
    s = dict(max_new_tokens=6, seed=2, num_samples=3)
    out = lexical_shortlist(aligned, tok, ["hi"], DecodeContext(sampling=s, extra={"lex_table": table}))
    assert all(set(y) <= set("abc") for y in out[0]) and len(out[0]) == 3
    full = {x: {t: 1.0 for t in range(128)} for x in src}
    s1 = dict(max_new_tokens=6, seed=2)
    got = lexical_shortlist(
        aligned, tok, ["hi"], DecodeContext(sampling=s1, extra={"lex_table": full}), k=128
    )
    assert got == sample_text(aligned, tok, ["hi"], **s1)
    with pytest.raises(ValueError, match="lex_table"):
        lexical_shortlist(aligned, tok, ["hi"], DecodeContext())
