"""Per-token log-probs of completion tokens, without ever materialising a ``[B, T, V]`` logits tensor.

The backbone runs once to hidden states; only the rows whose *next* token is a completion token go through the
LM head (:mod:`alignkit.engine.head`). Padding/joining of token lists and batch scoring live here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from alignkit.engine._progress import make_progress
from alignkit.engine.head import HEAD_WORKSPACE, head_logps, logps_at
from alignkit.engine.models import _backbone_and_head, model_device, unwrap_model

__all__ = [
    "HEAD_WORKSPACE",
    "TokenLogps",
    "completion_logps",
    "full_logits_logps",
    "head_logps",
    "join",
    "model_device",
    "pad_right",
    "sequence_logps",
    "unwrap_model",
]


@dataclass
class TokenLogps:
    """Per-token log-probs aligned with ``input_ids[:, 1:]``: position ``t`` scores token ``t + 1``.

    ``logps`` is zero off ``mask``; ``log_sum_sq`` (``log sum_v p_v^2``, WPO's weight) is ``None`` unless asked.
    """

    logps: Tensor  # (B, L-1) float32
    mask: Tensor  # (B, L-1) float32, 1 on scored completion tokens
    log_sum_sq: Tensor | None = None  # (B, L-1) or None

    def sums(self) -> Tensor:
        """Summed log-probs per row, accumulated in fp64: ``(B,)`` float64."""
        return (self.logps.double() * self.mask.double()).sum(-1)

    def lengths(self) -> Tensor:
        return self.mask.sum(-1)


def completion_logps(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    *,
    position_ids: Tensor | None = None,
    with_log_sum_sq: bool = False,
) -> TokenLogps:
    """Log-probs of the completion tokens of ``input_ids`` under ``model`` (gradients flow when enabled).

    ``completion_mask`` (B, L) is 1 on completion tokens; the result is aligned with ``input_ids[:, 1:]``.
    Works with any ``AutoModelForCausalLM`` exposing ``get_decoder()`` / ``get_output_embeddings()`` (falls back
    to a full forward otherwise), with peft LoRA models (adapters live in the backbone) and through DDP.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, L); got shape {tuple(input_ids.shape)}")
    if completion_mask.shape != input_ids.shape or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} and completion_mask {tuple(completion_mask.shape)} "
            f"must match input_ids {tuple(input_ids.shape)}"
        )
    target_mask = completion_mask[:, 1:].bool() & attention_mask[:, 1:].bool()
    b, length = input_ids.shape
    # Trailing columns where no row scores a token need no forward.
    scored_cols = target_mask.any(0).nonzero()
    last = int(scored_cols.max().item()) + 2 if scored_cols.numel() else 1
    ids, att = input_ids[:, :last], attention_mask[:, :last]
    pos = position_ids[:, :last] if position_ids is not None else None
    decoder, head = _backbone_and_head(model)
    if decoder is not None:
        hidden = decoder(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=False)[0]
        hidden = hidden[:, :-1]
    else:  # no separable backbone: a full forward (materialises logits; rare)
        hidden = None
        logits_full = model(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=False).logits
    tmask = target_mask[:, : last - 1]
    targets = input_ids[:, 1:last][tmask]
    out = torch.zeros(b, length - 1, dtype=torch.float32, device=input_ids.device)
    lss_out = torch.zeros_like(out) if with_log_sum_sq else None
    if targets.numel():
        if hidden is not None:
            lp_all, lss_all = head_logps(model, hidden[tmask], targets, with_log_sum_sq=with_log_sum_sq)
        else:
            sel = logits_full[:, :-1][tmask].float()
            lp_all, lse = logps_at(sel, targets)
            lss_all = torch.logsumexp(2 * sel, -1) - 2 * lse if with_log_sum_sq else None
        full_mask = torch.zeros(b, length - 1, dtype=torch.bool, device=input_ids.device)
        full_mask[:, : last - 1] = tmask
        out = out.masked_scatter(full_mask, lp_all)
        if with_log_sum_sq:
            lss_out = lss_out.masked_scatter(full_mask, lss_all)
    return TokenLogps(logps=out, mask=target_mask.float(), log_sum_sq=lss_out)


def pad_right(seqs: list[list[int]], pad: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Right-pad token lists into ``(ids, attention_mask)``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        att[i, : len(s)] = 1
    return ids.to(device), att.to(device)


def join(
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    pad_token_id: int,
    device: torch.device | None,
    masks: list[list[int] | None] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Join separately tokenised prompts and completions: ``(input_ids, attention_mask, completion_mask)``.

    ``masks[i]`` (optional, one 0/1 per completion token) scores only some completion tokens (SFT on the
    assistant turns of a conversation)."""
    seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    ids, att = pad_right(seqs, pad_token_id, device)
    comp = torch.zeros_like(att)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        m = masks[i] if masks is not None else None
        if m is None:
            comp[i, len(p) : len(p) + len(c)] = 1
        else:
            comp[i, len(p) : len(p) + len(c)] = torch.tensor(m, dtype=comp.dtype)
    return ids, att, comp


@torch.no_grad()
def sequence_logps(
    model: nn.Module,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    *,
    batch_size: int = 64,
    pad_token_id: int = 0,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Summed log-probs ``log pi(completion | prompt)`` per pair, ``(sums float64 (N,), lengths (N,))``.

    Prompts must be non-empty (the first completion token needs a context). Rows are length-sorted into
    batches to limit padding; results come back in input order.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        if len(p) == 0:
            raise ValueError(
                f"prompt {i} is empty: the first completion token needs at least one prompt token"
            )
        if len(c) == 0:
            raise ValueError(f"completion {i} is empty: nothing to score")
    n = len(prompt_ids)
    sums = torch.zeros(n, dtype=torch.float64)
    lengths = torch.zeros(n, dtype=torch.long)
    if n == 0:
        return sums, lengths
    device = model_device(model)
    order = sorted(range(n), key=lambda i: len(prompt_ids[i]) + len(completion_ids[i]))
    was_training = model.training
    model.eval()
    try:
        with make_progress(disable=not progress) as bar:
            task = bar.add_task("scoring", total=n)
            for s in range(0, n, batch_size):
                idx = order[s : s + batch_size]
                ids, att, comp = join(
                    [prompt_ids[i] for i in idx], [completion_ids[i] for i in idx], pad_token_id, device
                )
                tl = completion_logps(model, ids, att, comp)
                sums[idx] = tl.sums().cpu()
                lengths[idx] = tl.mask.sum(-1).long().cpu()
                bar.advance(task, len(idx))
    finally:
        model.train(was_training)
    return sums, lengths


def full_logits_logps(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor
) -> TokenLogps:
    """The plain path: a padded forward with the full ``[B, L, V]`` logits and ``log_softmax`` over all of them.

    The baseline every fast path is checked against (``TrainConfig(completion_only_head=False)``), and the
    fallback for models without a separable LM head. Same layout as :func:`completion_logps`.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    lp, _ = logps_at(logits[:, :-1], input_ids[:, 1:])
    mask = (completion_mask[:, 1:].bool() & attention_mask[:, 1:].bool()).float()
    return TokenLogps(logps=lp * mask, mask=mask)
