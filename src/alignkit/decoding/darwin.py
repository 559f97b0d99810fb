"""Darwin: reward-guided evolutionary search at decoding time — mutate the instruction, decode a population of
states, every few tokens keep the reward's top-k and replace the rest by copies of them; keep the best output."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from alignkit.decoding._common import DecodeContext, RewardFn, encode, pad_id_of
from alignkit.engine.generation import sample
from alignkit.registry import register

PAPER = "Reward Steering with Evolutionary Heuristics for Decoding-time Alignment"

MutateFn = Callable[[str, int], Sequence[str]]


def identity_mutation(instruction: str, n: int) -> list[str]:
    """The official fallback mutation: ``n`` copies of the instruction."""
    return [instruction] * n


@dataclass
class State:
    """One member of the population: the index of the (mutated) instruction it decodes from, its completion
    token ids so far, and whether it has finished (emitted EOS)."""

    origin: int
    tokens: list[int] = field(default_factory=list)
    done: bool = False


def reward_guided_replacement(
    scores: Sequence[float], done: Sequence[bool], top_k: int, rng: random.Random
) -> list[int]:
    """For each state the index of the state it becomes: the ``top_k`` highest-scoring states (first on ties)
    and every finished state keep themselves; every other state is replaced by a uniform choice among the
    top-k. Returns ``src`` with ``src[i] == i`` for kept states."""
    if len(scores) != len(done):
        raise ValueError(f"scores and done differ in length: {len(scores)} vs {len(done)}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1; got {top_k}")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    top = order[:top_k]
    return [i if (i in top or done[i]) else rng.choice(top) for i in range(len(scores))]


def _explore(
    model: nn.Module,
    tokenizer: Any,
    seed_prompt: str,
    instructions: Sequence[str],
    reward_fn: RewardFn,
    *,
    max_new_tokens: int,
    period: int,
    top_k: int,
    rng: random.Random,
    sampling: dict[str, Any],
    seed: int,
) -> tuple[list[State], list[int]]:
    """Decode one state per instruction in segments of ``period`` tokens; after each segment, score each
    partial completion against the *seed* prompt and apply :func:`reward_guided_replacement`. Returns the
    final states and, per instruction, how many times one of its states was in a round's top-k (its wins)."""
    eos = tokenizer.eos_token_id
    prompt_ids = encode(tokenizer, instructions)
    states = [State(origin=i) for i in range(len(instructions))]
    wins = [0] * len(instructions)
    made, segment = 0, 0
    while made < max_new_tokens and not all(s.done for s in states):
        step = min(period, max_new_tokens - made)
        live = [i for i, s in enumerate(states) if not s.done]
        outs = sample(
            model,
            [prompt_ids[states[i].origin] + states[i].tokens for i in live],
            num_samples=1,
            max_new_tokens=step,
            seed=seed + 7919 * segment,
            eos_token_id=eos,
            pad_token_id=pad_id_of(model, tokenizer),
            progress=False,
            **sampling,
        )
        for i, per in zip(live, outs, strict=True):
            states[i].tokens = states[i].tokens + list(per[0])
            states[i].done = bool(per[0]) and per[0][-1] == eos
        made += step
        segment += 1
        if made >= max_new_tokens or all(s.done for s in states):
            break
        texts = [tokenizer.decode(s.tokens, skip_special_tokens=True) for s in states]
        scores = [float(reward_fn(seed_prompt, t)) for t in texts]
        src = reward_guided_replacement(scores, [s.done for s in states], top_k, rng)
        for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:top_k]:
            wins[states[i].origin] += 1
        # a replaced state takes the winner's partial response but keeps its own instruction (official code)
        states = [
            s if j == i else State(origin=s.origin, tokens=list(states[j].tokens), done=states[j].done)
            for i, (j, s) in enumerate(zip(src, states, strict=True))
        ]
    return states, wins


@register(
    name="darwin",
    verification="paper-formula",
    kind="decoder",
    family="search",
    aliases=("reward_steering_evolutionary",),
    paper=PAPER,
    arxiv="2406.15193",
    tags=("decoding", "needs:reward_fn", "search"),
    summary="mutate the instruction, decode a population, keep reward top-k every few tokens, return the best",
)
def darwin(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    context: DecodeContext,
    *,
    iterations: int = 1,
    n_states: int = 5,
    replacement_period: int = 40,
    top_k: int = 3,
    n_archive_add: int = 2,
) -> list[list[str]]:
    """Reward Steering with Evolutionary Heuristics for Decoding-time Alignment (Hung, Majumder, Mehrish,
    Poria 2024; arXiv:2406.15193) — Darwin.

    Per prompt x: decode one sample y_0 for x itself (the seed) and start the archive A = {(x, r(x, y_0))}.
    Each iteration picks an instruction from A uniformly, mutates it into ``n_states`` instructions
    (``context.extra['mutate_fn'](instruction, n)``; default: copies, the official fallback), and decodes one
    state per mutant; every ``replacement_period`` tokens each partial state is scored by the reward against
    the *seed* instruction x, the top-k states and the finished ones are kept, the others replaced by a random
    top-k state (exploration + exploitation). The best finished state updates the running best; the
    ``n_archive_add`` mutants whose states survived replacement most often join A.

    Formula:
        y* = argmax_{y in {y_0} u S_1 u ... u S_G} r(x, y)
        S_g: population of n_states states decoded from mutate(a_g), a_g ~ Uniform(A_g);
        every replacement_period tokens: K = top_k_i r(x, s_i);  s_i <- s_i if i in K or s_i finished,
                                                                 else s_j, j ~ Uniform(K)
        (iterations = 0: y* = y_0, the plain sample;  replacement_period >= max_new_tokens: best-of-(1 + G n))

    Hyper-parameters:
        iterations: evolutionary iterations G (default 1, official default).
        n_states: population size per iteration (default 5 = the official 5 mutations per instruction).
        replacement_period: tokens between reward-guided replacements (default 40, official default).
        top_k: states kept per replacement (default 3, official default).
        n_archive_add: mutated instructions added to the archive per iteration (default 2, as official).

    Sample budget: 1 + iterations * n_states completions of up to ``max_new_tokens`` tokens are decoded per
    prompt (replacement copies partial states, it decodes nothing extra), plus one reward call per state per
    replacement; compare with best-of-n at n = 1 + iterations * n_states. ``context.sampling`` is used for
    each segment (``num_samples`` is ignored: one best completion per prompt, ``out[prompt] == [best]``). The
    official look-ahead (``look_ahead=0`` by default) is not implemented.

    Source: the official code declare-lab/darwin ``darwin.py`` (``Darwin.explore``, ``random_replacement``,
    ``generate``, ``compute_sequence_score``), read via search: rewards against the seed instruction, top-k
    and finished states kept, a replaced state takes a top-k state's partial response under its own
    instruction, win counts over all rounds (the final one included) pick the 2 mutants added to the archive,
    the seed sample competes for the best output. Official sampling is temperature 0.7, top-k 40 (pass them
    in ``context.sampling``). The LLM-prompted 5-way paraphrase mutation is left to a user ``mutate_fn`` (tiny
    models cannot paraphrase). The paper's pdf was not read.
    """
    reward_fn = context.need("reward_fn", "darwin")
    for name, v, lo in (
        ("iterations", iterations, 0),
        ("n_states", n_states, 1),
        ("replacement_period", replacement_period, 1),
        ("top_k", top_k, 1),
        ("n_archive_add", n_archive_add, 0),
    ):
        if v < lo:
            raise ValueError(f"{name} must be >= {lo}; got {v}")
    mutate: MutateFn = context.extra.get("mutate_fn") or identity_mutation
    sampling = {
        k: v
        for k, v in context.sampling.items()
        if k not in ("num_samples", "max_new_tokens", "seed", "progress", "eos_token_id", "pad_token_id")
    }
    max_new = int(context.sampling.get("max_new_tokens", 32))
    seed = int(context.sampling.get("seed", 0))
    out: list[list[str]] = []
    for pi, x in enumerate(prompts):
        rng = random.Random(seed * 1_000_003 + pi)
        kw = dict(max_new_tokens=max_new, top_k=top_k, rng=rng, sampling=sampling, seed=seed + 104729 * pi)
        (s0,), _ = _explore(model, tokenizer, x, [x], reward_fn, period=max_new + 1, **kw)
        best = tokenizer.decode(s0.tokens, skip_special_tokens=True)
        best_r = float(reward_fn(x, best))
        archive: list[tuple[str, float]] = [(x, best_r)]
        for g in range(iterations):
            parent = rng.choice(archive)[0]
            mutants = list(mutate(parent, n_states))
            if len(mutants) != n_states:
                raise ValueError(f"mutate_fn returned {len(mutants)} instructions; n_states is {n_states}")
            kw["seed"] = seed + 104729 * pi + 15485863 * (g + 1)
            states, wins = _explore(model, tokenizer, x, mutants, reward_fn, period=replacement_period, **kw)
            texts = [tokenizer.decode(s.tokens, skip_special_tokens=True) for s in states]
            rewards = [float(reward_fn(x, t)) for t in texts]
            for t, r in zip(texts, rewards, strict=True):
                if r > best_r:
                    best, best_r = t, r
            for s, r in zip(states, rewards, strict=True):  # the final ranking counts as a round too
                if r >= sorted(rewards, reverse=True)[min(top_k, n_states) - 1]:
                    wins[s.origin] += 1
            top = sorted(range(n_states), key=lambda i: (-wins[i], i))[:n_archive_add]
            for i in top:
                r_i = max((r for s, r in zip(states, rewards, strict=True) if s.origin == i), default=best_r)
                archive.append((mutants[i], r_i))
        out.append([best])
    return out
