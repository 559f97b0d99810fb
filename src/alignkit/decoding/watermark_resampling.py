"""Alignment resampling: best-of-n over watermarked samples with an external reward, restoring alignment the
watermark degrades while every returned text stays watermarked (a KGW-style green-list watermark here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.decoding._common import DecodeContext, encode, sample_text
from alignkit.registry import register

PAPER = "Watermarking Degrades Alignment in Language Models: Analysis and Mitigation"


class GreenListWatermark:
    """KGW soft watermark: the previous token seeds a permutation of the vocabulary; its first
    ``round(gamma * V)`` ids are "green" and get ``+delta`` on their logits. Detection counts green tokens."""

    def __init__(
        self, vocab_size: int, *, gamma: float = 0.25, delta: float = 2.0, key: int = 15485863
    ) -> None:
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1); got {gamma}")
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2; got {vocab_size}")
        self.vocab_size, self.gamma, self.delta, self.key = (
            int(vocab_size),
            float(gamma),
            float(delta),
            int(key),
        )
        self.n_green = max(1, round(self.gamma * self.vocab_size))
        self._cache: dict[int, Tensor] = {}

    def green_mask(self, prev_token: int) -> Tensor:
        """Bool ``[V]``: the green list after ``prev_token``."""
        prev_token = int(prev_token)
        if prev_token not in self._cache:
            g = torch.Generator().manual_seed(self.key * (prev_token + 1) % (2**63 - 1))
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            mask[torch.randperm(self.vocab_size, generator=g)[: self.n_green]] = True
            self._cache[prev_token] = mask
        return self._cache[prev_token]

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        masks = torch.stack([self.green_mask(t) for t in input_ids[:, -1].tolist()]).to(scores.device)
        v = min(scores.shape[-1], self.vocab_size)
        out = scores.clone()
        out[:, :v] = out[:, :v] + self.delta * masks[:, :v].to(scores.dtype)
        return out

    def z_score(self, tokens: Sequence[int], prev_token: int) -> float:
        """(G - gamma T) / sqrt(T gamma (1 - gamma)) over the T scored tokens (each judged by its predecessor,
        the first by ``prev_token``, usually the last prompt token). 0.0 for an empty text."""
        seq = [int(prev_token), *map(int, tokens)]
        t = len(seq) - 1
        if t == 0:
            return 0.0
        g = sum(
            bool(self.green_mask(a)[b])
            for a, b in zip(seq[:-1], seq[1:], strict=True)
            if 0 <= b < self.vocab_size
        )
        gamma = self.n_green / self.vocab_size
        return (g - gamma * t) / math.sqrt(t * gamma * (1 - gamma))


def best_of_n(candidates: Sequence[str], rewards: Sequence[float]) -> tuple[int, str]:
    """Index and text of the highest-reward candidate (first on ties)."""
    if len(candidates) != len(rewards) or not candidates:
        raise ValueError(f"need as many rewards as candidates (>0); got {len(candidates)} and {len(rewards)}")
    i = max(range(len(rewards)), key=lambda k: (rewards[k], -k))
    return i, candidates[i]


@register(
    name="alignment_resampling",
    verification="reconstruction",
    kind="decoder",
    family="selection",
    aliases=("watermark_best_of_n",),
    paper=PAPER,
    arxiv="2506.04462",
    tags=("decoding", "needs:reward_fn", "watermark"),
    summary="n green-list-watermarked samples, keep the one an external reward scores highest",
)
def alignment_resampling(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    context: DecodeContext,
    *,
    n: int = 4,
    gamma: float = 0.25,
    delta: float = 2.0,
    key: int = 15485863,
) -> list[list[str]]:
    """Watermarking Degrades Alignment in Language Models: Analysis and Mitigation (arXiv:2506.04462) —
    Alignment Resampling (AR).

    Sample ``n`` watermarked completions per prompt and return the one with the highest external reward
    ``context.reward_fn(prompt, completion)``: every candidate is watermarked, so the choice keeps detectability.

    Formula:
        KGW: z_t[v] += delta for v in Green(y_{t-1}),  |Green| = gamma * V
        y* = argmax_{i <= n} r(x, y_i),  y_i ~ watermarked policy
        E[r(y*)] - E[r_unwatermarked] >= C sqrt(log n) - eps     (paper's bound; eps = watermark degradation)
        detection: z = (|{t: y_t in Green(y_{t-1})}| - gamma T) / sqrt(T gamma (1 - gamma))

    Hyper-parameters:
        n: samples per prompt (default 4; the paper finds 2-4 recover unwatermarked alignment).
        gamma: green-list fraction (default 0.25, the KGW reference code's default).
        delta: green logit bias (default 2.0, the KGW reference code's default).
        key: watermark secret key (default 15485863, the KGW reference code's hash key).

    Returns one completion per prompt (``out[prompt] == [best]``); ``context.sampling['num_samples']`` is
    replaced by ``n``. Source: catalogue entry #54 (abstract, authors' blog: best-of-n over watermarked samples,
    the sqrt(log n) bound). KGW is the standard Kirchenbauer et al. scheme with a simplified seeding (one key x
    previous token, not the reference hashing) — UNVERIFIED against jwkirchenbauer/lm-watermarking; the paper's
    modified Gumbel watermark is not implemented.
    """
    reward_fn = context.need("reward_fn", "alignment_resampling")
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    wm = GreenListWatermark(_vocab(model), gamma=gamma, delta=delta, key=key)
    sampling = {**context.sampling, "num_samples": n}
    outs = sample_text(model, tokenizer, prompts, logits_processor=wm, **sampling)
    return [[best_of_n(c, [reward_fn(p, y) for y in c])[1]] for p, c in zip(prompts, outs, strict=True)]


def _vocab(model: nn.Module) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def watermark_z(
    tokenizer: Any,
    prompt: str,
    completion: str,
    *,
    vocab_size: int,
    gamma: float = 0.25,
    key: int = 15485863,
    completion_ids: Sequence[int] | None = None,
) -> float:
    """Detection z-score of ``completion`` after ``prompt`` (re-tokenised unless ``completion_ids`` is given)."""
    wm = GreenListWatermark(vocab_size, gamma=gamma, key=key)
    prev = encode(tokenizer, [prompt])[0][-1]
    ids = (
        completion_ids
        if completion_ids is not None
        else tokenizer(completion, add_special_tokens=False)["input_ids"]
    )
    return wm.z_score(ids, prev)
