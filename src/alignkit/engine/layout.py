"""One scorer interface for every model a run scores with: policy, reference and KL alike.

A :class:`Layout` is one micro-batch of ``(prompt, completion)`` rows laid out for the model: padded
(``input_ids`` / ``attention_mask`` / ``completion_mask``) or packed (:class:`~alignkit.engine.packing.PackedBatch`,
padding-free; pairs may share their prompt). :func:`score` turns a layout into per-token log-probs of the
completion tokens the same way for both; builders never branch on padded vs packed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from alignkit.engine.logprobs import TokenLogps, completion_logps, full_logits_logps, join
from alignkit.engine.packing import PackedBatch, pack_pairs, pack_sequences, packed_logps


@dataclass
class Layout:
    """Rows ``prompts[i] + completions[i]`` as the model sees them (``padded`` or ``packed``, exactly one)."""

    prompts: list[list[int]]
    completions: list[list[int]]
    padded: tuple[Tensor, Tensor, Tensor] | None = None
    packed: PackedBatch | None = None

    @property
    def tokens(self) -> float:
        """Tokens as the padded path counts them (prompt once per row): the unit of tokens/s."""
        if self.packed is not None:
            return float(self.packed.real_tokens)
        return float(self.padded[1].sum())


@dataclass
class Layouter:
    """Decides each micro-batch's layout. ``packing``: the model(s) are in packed attention; ``pays(packed,
    row_lengths)`` says whether packing this micro-batch is worth it (else it is padded); ``shared_prompt``: pairs
    share one prompt computation."""

    pad: int
    device: torch.device
    packing: bool = False
    shared_prompt: bool = False
    pays: Callable[[PackedBatch, list[int]], bool] | None = None

    def rows(
        self,
        prompts: Sequence[list[int]],
        completions: Sequence[list[int]],
        masks: Sequence[list[int] | None] | None = None,
    ) -> Layout:
        """Rows of one completion each; ``masks`` (0/1 per completion token) score only some tokens."""
        prompts, completions = [list(p) for p in prompts], [list(c) for c in completions]
        if masks is not None and all(m is None for m in masks):
            masks = None
        if self.packing:
            packed = pack_sequences(prompts, completions, self.device, masks=masks)
            if self._pays(packed, prompts, completions):
                return Layout(prompts, completions, packed=packed)
        padded = join(prompts, completions, self.pad, self.device, masks=list(masks) if masks else None)
        return Layout(prompts, completions, padded=padded)

    def pairs(
        self,
        prompts: Sequence[list[int]],
        chosen: Sequence[list[int]],
        rejected: Sequence[list[int]],
        rejected_prompts: Sequence[list[int]] | None = None,
    ) -> Layout:
        """Rows ``0..B-1`` chosen, ``B..2B-1`` rejected (one forward for both). ``rejected_prompts``: the rejected
        rows' prompts where truncation (``keep_end``, per sequence as TRL) left them different from the chosen's
        (then no prompt is shared in packing)."""
        p2 = [list(p) for p in prompts] + [list(p) for p in (rejected_prompts or prompts)]
        comps = [list(c) for c in chosen] + [list(r) for r in rejected]
        if self.packing:
            same = p2[: len(prompts)] == p2[len(prompts) :]
            packed = (
                pack_pairs(prompts, chosen, rejected, self.device, shared_prompt=self.shared_prompt)
                if same
                else pack_sequences(p2, comps, self.device)
            )
            if self._pays(packed, p2, comps):
                return Layout(p2, comps, packed=packed)
        return Layout(p2, comps, padded=join(p2, comps, self.pad, self.device))

    def _pays(self, packed: PackedBatch, prompts: list[list[int]], comps: list[list[int]]) -> bool:
        if self.pays is None:
            return True
        return self.pays(packed, [len(p) + len(c) for p, c in zip(prompts, comps, strict=True)])


def score(
    model: nn.Module, layout: Layout, *, with_log_sum_sq: bool = False, full_logits: bool = False
) -> TokenLogps:
    """Per-token log-probs of ``layout``'s completion tokens under ``model`` (gradients flow when enabled).

    Packed: ``(rows, width)`` left-aligned; padded: aligned with ``input_ids[:, 1:]``. Either way
    ``TokenLogps.sums()`` are the per-row sums and ``mask`` marks the scored tokens. ``full_logits``: the plain
    padded forward with the full ``[B, L, V]`` logits (the baseline the fast paths are checked against)."""
    if layout.packed is not None:
        return packed_logps(model, layout.packed, with_log_sum_sq=with_log_sum_sq)
    ids, att, comp = layout.padded
    if full_logits and not with_log_sum_sq:
        return full_logits_logps(model, ids, att, comp)
    return completion_logps(model, ids, att, comp, with_log_sum_sq=with_log_sum_sq)


class PolicyScorer(nn.Module):
    """The policy forward as one module (``forward(layout) -> (logps, mask, log_sum_sq)``), so DDP wraps exactly
    what a step calls; FSDP shards the model inside it in place."""

    def __init__(self, model: nn.Module, full_logits: bool = False) -> None:
        super().__init__()
        self.model = model
        self.full_logits = full_logits

    def forward(self, layout: Layout, with_log_sum_sq: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        tl = score(self.model, layout, with_log_sum_sq=with_log_sum_sq, full_logits=self.full_logits)
        return tl.logps, tl.mask, tl.log_sum_sq
