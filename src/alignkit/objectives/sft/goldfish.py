"""Goldfish loss: a pseudo-random, context-hashed subset of target tokens is left out of the SFT loss."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from alignkit.registry import register
from alignkit.types import SFTBatch

PAPER = "Be like a Goldfish, Don't Memorize! Mitigating Memorization in Generative LLMs"
TABLE_SIZE = 1_000_003
TABLE_SEED = 2971215073
STRATEGIES = ("hash-table", "static")


@functools.lru_cache(maxsize=1)
def _hash_table() -> Tensor:
    # The official code's table: uniform [0, 1) values from a generator seeded 2971215073.
    return torch.rand(TABLE_SIZE, generator=torch.Generator().manual_seed(TABLE_SEED), dtype=torch.float32)


@register(
    name="goldfish",
    verification="paper-formula",
    kind="data_rule",
    family="sft",
    paper=PAPER,
    arxiv="2406.10209",
    tags=("supervised", "token-level", "algorithm:pointwise", "feedback:demonstration", "data:off-policy"),
)
def goldfish_mask(
    token_ids: Tensor, *, k: float = 4, h: int = 13, strategy: str = "hash-table", start: int = 0
) -> Tensor:
    """Be like a Goldfish, Don't Memorize! Mitigating Memorization in Generative LLMs (Goldfish loss,
    arXiv:2406.10209): the keep-mask of the goldfish loss over target tokens ``token_ids`` (B, T).

    A token is dropped from the loss when a hash of the h target tokens ending at it falls below 1/k, so about
    1/k of tokens are dropped, and a passage repeated anywhere (in any document or batch) always drops the same
    tokens — the model is never supervised on them and cannot reproduce the passage verbatim.

    Formula:
        key_t = prod(ids[t-h+1 .. t])  (int64 arithmetic)       ("hash-table")
        drop_t = table[key_t mod 1000003] < 1/k,  table = U[0,1) values from a generator seeded 2971215073
        positions t < h-1 are never dropped; "static" drops t = start, start+k, ...
        L = -sum_t G_t log pi(x_t | x_<t) / sum_t G_t,  G_t = 1 - drop_t   (use with the ``sft`` objective)

    Hyper-parameters:
        k: 4 — drop rate 1/k (the paper's main setting; k = inf keeps every token).
        h: 13 — context width of the hash: the released experiment configs set ``goldfish_context_width: 13``
            (ahans30/goldfish-loss ``launch_scripts/config/tinyllama-1b-equal-supervised-tokens*.yaml``, read);
            ``pretrain_umd/train.py``'s dataclass default is 4. alignkit follows the experiments (13).
        strategy: "hash-table" — "hash-table" (the released runs) or "static".
        start: 0 — first dropped position of the "static" strategy (ours: from the first token).

    Returns a bool tensor (B, T), True where the token stays in the loss. Source: official code
    ahans30/goldfish-loss ``apply_goldfish`` / ``_load_hash_table`` as summarised in the project catalogue; the
    table here is drawn with torch's CPU generator, so it matches the official table only if that code drew it
    the same way (not re-checked).
    """
    if token_ids.dim() != 2 or token_ids.is_floating_point():
        raise ValueError(f"token_ids must be integer ids of shape (B, T); got {tuple(token_ids.shape)}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}")
    if not k >= 1:
        raise ValueError(f"k must be >= 1 (or inf); got {k}")
    b, t = token_ids.shape
    keep = torch.ones(b, t, dtype=torch.bool, device=token_ids.device)
    if math.isinf(k):
        return keep
    if strategy == "static":
        keep[:, start :: int(k)] = False
        return keep
    if h < 1:
        raise ValueError(f"h must be >= 1; got {h}")
    if t < h:
        return keep
    windows = token_ids.long().unfold(1, h, 1)  # (B, T-h+1, h): window ending at position h-1+j
    keys = windows.prod(-1).remainder(TABLE_SIZE)
    drop = _hash_table().to(token_ids.device)[keys] < 1.0 / k
    keep[:, h - 1 :] = ~drop
    return keep


def goldfish_batch(batch: SFTBatch, token_ids: Tensor, **kwargs: object) -> SFTBatch:
    """``batch`` with its mask restricted to the goldfish keep-mask; train it with the ``sft`` objective."""
    if token_ids.shape != batch.mask.shape:
        raise ValueError(f"token_ids has shape {tuple(token_ids.shape)}; expected {tuple(batch.mask.shape)}")
    keep = goldfish_mask(token_ids, **kwargs)
    return SFTBatch(logps=batch.logps, mask=batch.mask * keep.to(batch.mask.dtype))
