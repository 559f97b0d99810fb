from __future__ import annotations

import math

import pytest
import torch

from alignkit.decoding import DecodeContext
from alignkit.decoding.watermark_resampling import (
    GreenListWatermark,
    alignment_resampling,
    best_of_n,
    watermark_z,
)
from alignkit.engine.generation import sample


def test_z_score_by_hand_and_processor():
    wm = GreenListWatermark(8, gamma=0.25, delta=3.0, key=7)
    assert wm.n_green == 2 and int(wm.green_mask(5).sum()) == 2
    g = wm.green_mask(5).nonzero().flatten().tolist()
    r = (~wm.green_mask(5)).nonzero().flatten().tolist()
    # one token after 5: green -> z = (1 - 0.25) / sqrt(0.25 * 0.75); red -> (0 - 0.25) / sqrt(...)
    seq_all_green = [g[0]]
    assert wm.z_score(seq_all_green, 5) == pytest.approx((1 - 0.25) / math.sqrt(0.25 * 0.75))
    assert wm.z_score([r[0]], 5) == pytest.approx((0 - 0.25) / math.sqrt(0.25 * 0.75))
    assert wm.z_score([], 5) == 0.0
    scores = torch.zeros(2, 8)
    out = wm(torch.tensor([[1, 5], [1, 6]]), scores)
    assert out[0, g].tolist() == [3.0, 3.0] and out[0].sum().item() == 6.0
    assert torch.equal(out[1] > 0, wm.green_mask(6))
    with pytest.raises(ValueError, match="gamma"):
        GreenListWatermark(8, gamma=1.0)


def test_best_of_n_limits():
    assert best_of_n(["only"], [-3.0]) == (0, "only")
    assert best_of_n(["a", "b", "c"], [0.1, 0.5, 0.5]) == (1, "b")
    with pytest.raises(ValueError, match="rewards"):
        best_of_n(["a"], [])


def test_watermarked_sampling_is_detectable(aligned):
    wm = GreenListWatermark(128, gamma=0.25, delta=6.0)
    prompts = [[1, 40, 41]] * 3
    kw = dict(max_new_tokens=24, seed=0, progress=False, eos_token_id=[], pad_token_id=0)
    marked = sample(aligned, prompts, logits_processor=wm, **kw)
    plain = sample(aligned, prompts, **kw)
    zm = [wm.z_score(c[0], 41) for c in marked]
    zp = [wm.z_score(c[0], 41) for c in plain]
    assert min(zm) > 4.0 and max(zp) < 4.0


def test_resampling_picks_max_reward_and_stays_watermarked(aligned, tok):
    reward = lambda p, y: y.count("a") - 0.01 * len(y)  # noqa: E731
    s = dict(max_new_tokens=12, seed=1)
    ctx = DecodeContext(reward_fn=reward, sampling=s)
    got = alignment_resampling(aligned, tok, ["hi", "yo"], ctx, n=3, delta=6.0)
    again = alignment_resampling(aligned, tok, ["hi", "yo"], ctx, n=3, delta=6.0)
    assert got == again and all(len(x) == 1 for x in got)
    from alignkit.decoding import sample_text
    from alignkit.decoding.watermark_resampling import GreenListWatermark as W

    cands = sample_text(aligned, tok, ["hi", "yo"], logits_processor=W(128, delta=6.0), num_samples=3, **s)
    for (best,), c, p in zip(got, cands, ["hi", "yo"], strict=True):
        assert best in c and reward(p, best) == max(reward(p, y) for y in c)
    n1 = alignment_resampling(aligned, tok, ["hi"], ctx, n=1, delta=6.0)
    assert n1 == [[sample_text(aligned, tok, ["hi"], logits_processor=W(128, delta=6.0), **s)[0][0]]]
    with pytest.raises(ValueError, match="reward_fn"):
        alignment_resampling(aligned, tok, ["hi"], DecodeContext())
    assert isinstance(watermark_z(tok, "hi", got[0][0], vocab_size=128), float)
