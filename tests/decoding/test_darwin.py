from __future__ import annotations

import random

import pytest

import alignkit as ak
from alignkit.decoding import DecodeContext, darwin, reward_guided_replacement, sample_text
from alignkit.decoding.darwin import identity_mutation
from alignkit.engine.generation import sample


def reward(prompt: str, y: str) -> float:
    return y.count("a") + y.count("e") - 0.01 * len(y)


def test_replacement_by_hand():
    src = reward_guided_replacement(
        [0.1, 0.9, 0.5, 0.3, -1.0], [False, False, False, True, False], 2, random.Random(0)
    )
    # top-2 = {1, 2} keep themselves, finished state 3 is kept, states 0 and 4 become copies of a top-2 state
    assert src[1:4] == [1, 2, 3] and src[0] in (1, 2) and src[4] in (1, 2)
    assert reward_guided_replacement([0.3, 0.3], [False, False], 1, random.Random(0)) == [
        0,
        0,
    ]  # first on ties
    assert reward_guided_replacement([1.0, 2.0], [False, False], 5, random.Random(0)) == [0, 1]
    with pytest.raises(ValueError, match="top_k"):
        reward_guided_replacement([1.0], [False], 0, random.Random(0))
    assert identity_mutation("x", 3) == ["x", "x", "x"]


def test_zero_iterations_is_the_initial_sample(aligned, tok):
    s = dict(max_new_tokens=8, seed=5, num_samples=3)
    got = darwin(aligned, tok, ["hi"], DecodeContext(reward_fn=reward, sampling=s), iterations=0)
    want = sample_text(aligned, tok, ["hi"], max_new_tokens=8, seed=5)[0][0]
    assert got == [[want]]


def test_no_replacement_is_best_of_one_plus_n(aligned, tok):
    # replacement_period >= max_new_tokens: no replacement round, so Darwin = best-of-(1 + n_states) over the seed
    # sample and n_states independent samples of the (identity-)mutated instruction
    s = dict(max_new_tokens=8, seed=5)
    got = darwin(
        aligned, tok, ["hi"], DecodeContext(reward_fn=reward, sampling=s), n_states=4, replacement_period=100
    )
    y0 = sample_text(aligned, tok, ["hi"], max_new_tokens=8, seed=5)[0][0]
    ids = tok("hi")["input_ids"]
    pop = sample(
        aligned,
        [ids] * 4,
        max_new_tokens=8,
        seed=5 + 15485863,
        eos_token_id=tok.eos_token_id,
        pad_token_id=0,
        progress=False,
    )
    cands = [y0] + [tok.decode(p[0], skip_special_tokens=True) for p in pop]
    best = max(cands, key=lambda y: (reward("hi", y), -cands.index(y)))
    assert got == [[best]] and reward("hi", got[0][0]) >= reward("hi", y0)


def test_replacement_search_never_loses_to_the_seed_sample_and_uses_mutations(aligned, tok):
    calls = []

    def mutate(instr: str, n: int) -> list[str]:
        calls.append(instr)
        return [instr + "!" * (i + 1) for i in range(n)]

    s = dict(max_new_tokens=12, seed=2)
    ctx = DecodeContext(reward_fn=reward, sampling=s, extra={"mutate_fn": mutate})
    prompts = ["hi", "ok go"]
    got = darwin(aligned, tok, prompts, ctx, iterations=2, n_states=4, replacement_period=3, top_k=2)
    assert got == darwin(aligned, tok, prompts, ctx, iterations=2, n_states=4, replacement_period=3, top_k=2)
    assert len(calls) == 4 * 2 and calls[0] == "hi"  # 2 iterations x 2 prompts, twice
    for i, p in enumerate(prompts):
        y0 = sample_text(aligned, tok, [p], max_new_tokens=12, seed=2 + 104729 * i)[0][0]
        assert reward(p, got[i][0]) >= reward(p, y0)
    with pytest.raises(ValueError, match="reward_fn"):
        darwin(aligned, tok, ["hi"], DecodeContext(sampling=s))
    bad = DecodeContext(reward_fn=reward, sampling=s, extra={"mutate_fn": lambda x, n: [x]})
    with pytest.raises(ValueError, match="mutate_fn returned 1"):
        darwin(aligned, tok, ["hi"], bad, n_states=3)
    with pytest.raises(ValueError, match="n_states"):
        darwin(aligned, tok, ["hi"], DecodeContext(reward_fn=reward, sampling=s), n_states=0)
    c = ak.get("darwin")
    assert c.kind == "decoder" and c.defaults["replacement_period"] == 40 and c.defaults["top_k"] == 3


def test_replacement_copies_the_top_state_prefix(aligned, tok):
    from alignkit.decoding.darwin import _explore

    decoded: list[list[int]] = []

    class Tok:  # records the token lists the search decodes (and scores)
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, *a, **k):
            return tok(*a, **k)

        def decode(self, ids, **k):
            decoded.append(list(ids))
            return tok.decode(ids, **k)

    states, wins = _explore(
        aligned,
        Tok(),
        "hi",
        ["hi", "hi?", "hi!", "hi."],
        reward,
        max_new_tokens=8,
        period=3,
        top_k=1,
        rng=random.Random(0),
        sampling={},
        seed=1,
    )
    first = decoded[:4]  # the four partial states scored after the first 3 tokens
    scores = [reward("hi", tok.decode(t, skip_special_tokens=True)) for t in first]
    top = max(range(4), key=lambda i: (scores[i], -i))
    for i, s in enumerate(states):
        if first[i][-1:] != [tok.eos_token_id]:  # unfinished after round 1: continues the round-1 winner
            assert s.tokens[:3] == first[top][:3]
        else:
            assert s.tokens == first[i]  # a finished state is never replaced
        assert s.origin == i  # ... each under its own instruction
    assert wins[top] >= 1 and sum(wins) == len(decoded) // 4  # one top-1 win per replacement round
