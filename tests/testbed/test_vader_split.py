"""The decoding effect tests' proxy reward: VADER on one half of its lexicon (alignkit.testbed.vader_split)."""

from __future__ import annotations

import zlib

import pytest

from alignkit.testbed.tasks import vader_compound
from alignkit.testbed.vader_split import _half_analyzer, lexicon_half, vader_half_compound


def test_the_halves_split_the_lexicon_into_two_disjoint_parts():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    full = SentimentIntensityAnalyzer().lexicon
    a, b = _half_analyzer(0).lexicon, _half_analyzer(1).lexicon
    assert not a.keys() & b.keys() and a.keys() | b.keys() == full.keys()
    assert len(a) == 3809 and len(b) == 3697  # of 7 506 entries
    assert lexicon_half("love") == zlib.crc32(b"love") % 2


def test_a_text_of_one_halfs_words_scores_zero_on_the_other():
    word = next(w for w in _half_analyzer(0).lexicon if w.isalpha() and _half_analyzer(0).lexicon[w] > 2)
    assert vader_half_compound(word, 1) == 0.0
    # a single word: the compound is the same normalisation of its valence v, v / sqrt(v^2 + 15)
    v = _half_analyzer(0).lexicon[word]
    assert (
        vader_half_compound(word, 0)
        == pytest.approx(vader_compound(word))
        == pytest.approx(v / (v * v + 15) ** 0.5, abs=1e-4)
    )
    with pytest.raises(ValueError, match="half"):
        vader_half_compound(word, 2)
