"""Pair labels agree with their Bradley–Terry probabilities (binomial z-tests), JSONL and the unpaired view."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alignkit.testbed import (
    Prompt,
    bradley_terry_probability,
    build_pairs,
    draw_labels,
    label_probability,
    read_jsonl,
    unpaired_view,
    write_jsonl,
)


class _Tok:
    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def _z(successes: int, n: int, p: float) -> float:
    return (successes - n * p) / math.sqrt(n * p * (1 - p))


def test_bradley_terry_probability_closed_form():
    assert bradley_terry_probability(0.5, 0.5, 0.1) == 0.5
    assert bradley_terry_probability(0.3, 0.1, 0.1) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert bradley_terry_probability(0.0, 1.0, 0.01) < 1e-40  # no overflow
    with pytest.raises(ValueError, match="temperature"):
        bradley_terry_probability(1.0, 0.0, 0.0)


@pytest.mark.parametrize("noise", [0.0, 0.2])
@pytest.mark.parametrize("margin", [0.0, 0.05, 0.1, 0.3])
def test_labels_follow_their_bradley_terry_probability(margin, noise):
    # 20k draws at one margin: the share labelled "a > b" must match (1-eps) P + eps (1-P) by a binomial z-test.
    n = 20_000
    temperature = 0.1
    labels = draw_labels(
        np.full(n, 0.2 + margin),
        np.full(n, 0.2),
        temperature=temperature,
        label_noise=noise,
        rng=np.random.default_rng(int(1000 * margin + 10 * noise)),
    )
    p = 1 / (1 + math.exp(-margin / temperature))
    q = (1 - noise) * p + noise * (1 - p)
    assert q == pytest.approx(label_probability(0.2 + margin, 0.2, temperature, noise))
    assert abs(_z(int(labels.sum()), n, q)) < 4.0


def test_built_pairs_agree_with_their_recorded_probabilities():
    # Many prompts with random rewards in [-1, 1]: bucket pairs by their recorded p_chosen; in every bucket the
    # share whose chosen side truly has the higher reward must match the mean of p_chosen.
    rng = np.random.default_rng(0)
    n = 6000
    prompts = [Prompt(f"p{i}", [i + 1]) for i in range(n)]
    rewards = rng.uniform(-1, 1, size=(n, 2)).round(3).tolist()
    comps = [[[1, i], [2, i]] for i in range(n)]
    pairs = build_pairs(prompts, comps, rewards, _Tok(), strategy="random", temperature=0.3, seed=1)
    assert len(pairs) > 0.99 * n
    p = np.array([r["p_chosen"] for r in pairs])
    agree = np.array([r["chosen_reward"] > r["rejected_reward"] for r in pairs])
    # The draw goes the gold way with probability sigmoid(|margin| / T); check that overall and within three
    # bins of that probability (a calibration test of the labels).
    margins = np.abs(np.array([r["chosen_reward"] - r["rejected_reward"] for r in pairs]))
    p_gold = 1 / (1 + np.exp(-margins / 0.3))
    assert abs(_z(int(agree.sum()), len(pairs), float(p_gold.mean()))) < 4.0
    edges = np.quantile(p_gold, [0, 1 / 3, 2 / 3, 1])
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (p_gold >= lo) & (p_gold <= hi) & (p_gold < 0.999)
        if sel.sum() > 200:
            assert abs(_z(int(agree[sel].sum()), int(sel.sum()), float(p_gold[sel].mean()))) < 4.0
    # and p_chosen is the Bradley–Terry probability of the recorded orientation
    for r in pairs[:50]:
        assert r["p_chosen"] == pytest.approx(
            bradley_terry_probability(r["chosen_reward"], r["rejected_reward"], 0.3)
        )
    assert ((p > 0.5) == agree).all()


def test_best_worst_pairs_drop_ties_and_are_deterministic():
    prompts = [Prompt("a", [1]), Prompt("b", [2]), Prompt("c", [3])]
    comps = [[[5], [6], [7]], [[8], [9], [10]], [[11], [12], [13]]]
    rewards = [[0.1, 0.9, -0.5], [0.0, 0.0, 0.0], [0.2, 0.2, 0.3]]
    pairs = build_pairs(prompts, comps, rewards, _Tok(), temperature=0.01, seed=0)
    assert [r["prompt"] for r in pairs] == ["a", "c"]  # prompt b: all samples tie
    assert pairs[0]["chosen_ids"] == [6] and pairs[0]["rejected_ids"] == [7]
    assert pairs[0]["chosen"] == "6"
    assert pairs == build_pairs(prompts, comps, rewards, _Tok(), temperature=0.01, seed=0)
    with pytest.raises(ValueError, match="strategy"):
        build_pairs(prompts, comps, rewards, _Tok(), strategy="worst")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ in length"):
        build_pairs(prompts[:2], comps, rewards, _Tok())


def test_label_noise_flips_the_expected_share():
    n = 4000
    prompts = [Prompt(str(i), [1]) for i in range(n)]
    comps = [[[1], [2]] for _ in range(n)]
    rewards = [[1.0, -1.0] for _ in range(n)]  # P = 1 at T = 0.01: every flip is noise
    pairs = build_pairs(prompts, comps, rewards, _Tok(), temperature=0.01, label_noise=0.25, seed=3)
    flipped = sum(r["chosen_reward"] < r["rejected_reward"] for r in pairs)
    assert abs(_z(flipped, n, 0.25)) < 4.0


def test_unpaired_view_and_jsonl_roundtrip(tmp_path):
    pairs = build_pairs([Prompt("x", [1])], [[[2, 3], [4]]], [[0.5, -0.5]], _Tok(), temperature=0.001, seed=0)
    rows = unpaired_view(pairs)
    assert [r["label"] for r in rows] == [True, False]
    assert rows[0]["completion_ids"] == [2, 3] and rows[1]["completion_ids"] == [4]
    path = write_jsonl(pairs, tmp_path / "sub" / "pairs.jsonl")
    assert read_jsonl(path) == pairs
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_jsonl(tmp_path / "bad.jsonl")
