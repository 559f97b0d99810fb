"""Shared pieces of the decoding-time methods: the decode context, logit mixing, running a second model on the
sampler's left-padded batch, and text-level sampling through the engine's seeded sampler."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.engine.generation import sample

RewardFn = Callable[[str, str], float]


@dataclass
class DecodeContext:
    """What a registered decoder may need besides the model and prompts.

    ``sampling`` holds :func:`alignkit.engine.generation.sample` keyword arguments (``max_new_tokens``,
    ``temperature``, ``top_p``, ``top_k``, ``seed``, ``num_samples``, ``batch_size``). ``ref_model``: the
    reference/unaligned model (DeRa). ``reward_fn(prompt, completion) -> float`` (Darwin, alignment
    resampling). ``aligner_model``: the rewriting model (Aligners). ``extra``: method-specific objects.
    """

    ref_model: nn.Module | None = None
    reward_fn: RewardFn | None = None
    aligner_model: nn.Module | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def need(self, name: str, method: str) -> Any:
        value = getattr(self, name, None)
        if value is None:
            value = self.extra.get(name)
        if value is None:
            raise ValueError(f"decoder {method!r} needs context.{name} (none was given)")
        return value


def interpolate_logits(z_a: Tensor, z_b: Tensor, lam: float) -> Tensor:
    """``lam * log_softmax(z_a) + (1 - lam) * log_softmax(z_b)`` over the last axis (normalised per model, so
    ``lam = 1`` is exactly ``z_a``'s distribution and ``lam = 0`` exactly ``z_b``'s; ``lam > 1`` extrapolates)."""
    if z_a.shape != z_b.shape:
        raise ValueError(f"logits shapes differ: {tuple(z_a.shape)} vs {tuple(z_b.shape)}")
    a = torch.log_softmax(z_a.float(), dim=-1)
    b = torch.log_softmax(z_b.float(), dim=-1)
    if lam == 1.0:
        return a
    if lam == 0.0:
        return b
    return lam * a + (1.0 - lam) * b


def left_pad_mask(input_ids: Tensor, pad_token_id: int) -> Tensor:
    """Attention mask of a left-padded batch: 0 on the leading pad run of each row, 1 from the first real token."""
    return (input_ids != pad_token_id).long().cummax(dim=1).values


@torch.no_grad()
def next_token_logits(model: nn.Module, input_ids: Tensor, pad_token_id: int) -> Tensor:
    """``model``'s next-token logits ``[B, V]`` (float32) for a left-padded batch, positions counted from the
    first real token as ``generate`` does. No KV cache: the whole prefix runs on every call (the reference that
    :class:`CachedNextTokenLogits` is tested against)."""
    mask = left_pad_mask(input_ids, pad_token_id)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=False)
    return out.logits[:, -1, :].float()


def left_padded_rows(input_ids: Tensor, pad_token_id: int) -> list[list[int]]:
    """The rows of a left-padded batch without their leading pad run (what :func:`next_token_logits` attends
    to: pads after the first real token, e.g. after a finished row's EOS, are kept)."""
    lead = (left_pad_mask(input_ids, pad_token_id) == 0).sum(-1).tolist()
    rows = [row[n:] for row, n in zip(input_ids.tolist(), lead, strict=True)]
    for i, row in enumerate(rows):
        if not row:
            raise ValueError(
                f"row {i} of input_ids holds only pad tokens (id {pad_token_id}): nothing to condition on"
            )
    return rows


def _forward_keywords(model: nn.Module) -> tuple[str, bool]:
    """The keyword ``model``'s forward takes its KV cache under (transformers >= 5.2x: ``cache``, before:
    ``past_key_values``), and whether it accepts ``logits_to_keep``."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft: the wrapped model
    params = inspect.signature(type(base).forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


class CachedNextTokenLogits:
    """``model``'s next-token logits for a batch of token sequences that grow between calls, with a KV cache.

    Each call gets every row's whole sequence (token ids, no padding) and returns the float32 logits ``[B, V]``
    that :func:`next_token_logits` would give for the left-padded batch of those rows. Per row, the longest
    prefix shared with the tokens already in the cache is kept (at most all but the last token, whose logits
    are needed) and only the rest is run: one new token per row and call when the rows grow by one, as in a
    sampler. Rows that changed further back (a text re-encoded differently) drop the changed cache slots by
    masking them out, so the batch still runs as one forward.

    Layout: the cache is a sequence of slots shared by the rows; a call appends a block of ``K`` slots (``K`` =
    the most new tokens of any row), each row's new tokens right-aligned in it, the rest masked. Positions are
    each token's index in its row, as in the uncached left-padded forward; the attention mask marks every row's
    live slots. A new batch (another size, or no row sharing a prefix), a cache more than twice the longest row
    (too many dead slots), or a dropped slot with a sliding-window model (whose window counts slots) starts a
    fresh cache: the same numbers, one full forward.
    """

    def __init__(self, model: nn.Module, pad_token_id: int) -> None:
        self.model = model
        self.pad_token_id = int(pad_token_id)
        self._cache_kw, self._keep_kw = _forward_keywords(model)
        self.reset()

    def reset(self) -> None:
        """Drop the cache (its memory is freed); the next call runs the whole sequences."""
        self.cache: Any = None
        self.mask: Tensor | None = None  # [B, slots] 1 on live slots
        self.tokens: list[list[int]] = []  # per row: the tokens in the live slots, in order
        self.slots: list[list[int]] = []  # per row: the slot index of each of those tokens
        self.fed_tokens = 0  # query tokens run through the model since the last reset (incl. block padding)

    @property
    def num_slots(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def _shared(self, seqs: Sequence[Sequence[int]]) -> list[int]:
        keep = []
        for old, new in zip(self.tokens, seqs, strict=True):
            n = min(len(old), len(new) - 1)
            if list(new[:n]) != old[:n]:
                n = next(k for k in range(n) if new[k] != old[k])
            keep.append(n)
        return keep

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        cfg = getattr(self.model, "config", None)
        return DynamicCache(config=cfg) if cfg is not None else DynamicCache()

    @torch.no_grad()
    def __call__(self, seqs: Sequence[Sequence[int]]) -> Tensor:
        for i, s in enumerate(seqs):
            if len(s) == 0:
                raise ValueError(f"seqs[{i}] is empty: the next-token logits need at least one token")
        b = len(seqs)
        keep = [0] * b
        if self.cache is not None and len(self.tokens) == b:
            keep = self._shared(seqs)
            dropped = any(k < len(t) for k, t in zip(keep, self.tokens, strict=True))
            sliding = any(getattr(self.cache, "is_sliding", None) or [])
            too_long = self.num_slots > 2 * max(map(len, seqs)) + 64
            if sum(keep) == 0 or too_long or (dropped and sliding):
                keep = [0] * b
                self.reset()
        else:
            self.reset()
        if self.cache is None:
            self.cache = self._new_cache()
            self.tokens, self.slots = [[] for _ in range(b)], [[] for _ in range(b)]
        dev = next(self.model.parameters()).device
        start = self.num_slots
        width = max(len(s) - k for s, k in zip(seqs, keep, strict=True))
        ids = torch.full((b, width), self.pad_token_id, dtype=torch.long)
        block = torch.zeros((b, width), dtype=torch.long)
        pos = torch.zeros((b, width), dtype=torch.long)
        for i, (s, k) in enumerate(zip(seqs, keep, strict=True)):
            if k < len(self.tokens[i]):  # the row changed after its first k tokens: mask the stale slots
                assert self.mask is not None
                self.mask[i, self.slots[i][k:]] = 0
                del self.tokens[i][k:], self.slots[i][k:]
            new = list(s[k:])
            off = width - len(new)
            ids[i, off:] = torch.tensor(new, dtype=torch.long)
            block[i, off:] = 1
            pos[i, off:] = torch.arange(k, len(s))
            self.tokens[i].extend(new)
            self.slots[i].extend(range(start + off, start + width))
        block = block.to(dev)
        self.mask = block if self.mask is None else torch.cat([self.mask, block], dim=1)
        kwargs: dict[str, Any] = {self._cache_kw: self.cache}
        if self._keep_kw:
            kwargs["logits_to_keep"] = 1
        out = self.model(
            input_ids=ids.to(dev),
            attention_mask=self.mask,
            position_ids=pos.to(dev),
            use_cache=True,
            **kwargs,
        )
        self.fed_tokens += b * width
        return out.logits[:, -1, :].float()


def pad_id_of(model: nn.Module, tokenizer: Any = None) -> int:
    if tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is not None:
        return int(tokenizer.pad_token_id)
    cfg = getattr(model, "config", None)
    pid = getattr(cfg, "pad_token_id", None)
    if pid is None:
        pid = getattr(cfg, "eos_token_id", None)
    return int(pid if pid is not None else 0)


def encode(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    return [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]


def sample_text(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    logits_processor: Any = None,
    **sampling: Any,
) -> list[list[str]]:
    """Decoded completions ``out[prompt][sample]`` from the engine's seeded sampler (progress bar off)."""
    sampling.setdefault("progress", False)
    sampling.setdefault("eos_token_id", tokenizer.eos_token_id)
    if sampling.get("pad_token_id") is None:
        sampling["pad_token_id"] = pad_id_of(model, tokenizer)
    comps = sample(model, encode(tokenizer, prompts), logits_processor=logits_processor, **sampling)
    return [[tokenizer.decode(c, skip_special_tokens=True) for c in per] for per in comps]


def check_prob(name: str, value: float, lo: float = 0.0, hi: float = 1.0) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}]; got {value}")
