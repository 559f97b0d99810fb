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
    first real token as ``generate`` does. No KV cache: fine for the small second models this is used with."""
    mask = left_pad_mask(input_ids, pad_token_id)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=False)
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
