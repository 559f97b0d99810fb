"""A proxy sentiment reward for decoding-time steering: VADER on one half of its lexicon.

The sentiment task's gold reward is VADER's compound score (:func:`alignkit.testbed.tasks.vader_compound`).
A decoding method that *steers* on that same score (best-of-n, alignment resampling, Darwin) and is then *judged*
by it wins by construction. The effect tests instead steer on a proxy: VADER with only one half of its 7 506-entry
lexicon (the words whose CRC-32 is even: half 0; odd: half 1; a fixed, seed-free split into two disjoint halves of
about 3 750 words), and judge with the full gold score — and, as a check that the gain is not the proxy's own
words, with the other half alone (the held-out half shares no word with the steering one).

Only the lexicon is split; VADER's rules (negation, boosters, "but", punctuation, the compound normalisation) are
the same in both halves."""

from __future__ import annotations

import functools
import zlib
from typing import Any


def lexicon_half(word: str) -> int:
    """Which half (0 or 1) of the VADER lexicon ``word`` belongs to: CRC-32 of its UTF-8 bytes, modulo 2."""
    return zlib.crc32(word.encode("utf-8")) % 2


@functools.cache
def _half_analyzer(half: int) -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    if half not in (0, 1):
        raise ValueError(f"half must be 0 or 1, got {half!r}")
    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon = {w: v for w, v in analyzer.lexicon.items() if lexicon_half(w) == half}
    return analyzer


def vader_half_compound(text: str, half: int) -> float:
    """VADER's compound score of ``text`` computed with only lexicon half ``half`` (0 or 1), in [-1, 1]."""
    return float(_half_analyzer(half).polarity_scores(text)["compound"])


def proxy_sentiment_reward(prompt: str, completion: str) -> float:
    """The steering (proxy) reward of the decoding effect tests: :func:`vader_half_compound` on half 0."""
    return vader_half_compound(completion, 0)


def held_out_sentiment_reward(prompt: str, completion: str) -> float:
    """The held-out judge: :func:`vader_half_compound` on half 1, disjoint from the steering half."""
    return vader_half_compound(completion, 1)
