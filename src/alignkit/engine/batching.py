"""Examples -> the objective's batch type. The engine computes log-probs; the registered objective computes the loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from alignkit.data.prepare import Example
from alignkit.engine.logprobs import join
from alignkit.types import PreferenceBatch, SFTBatch, UnpairedBatch

# (input_ids, attention_mask, completion_mask) -> (logps (B, L-1), mask (B, L-1), log_sum_sq or None)
Scorer = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor | None]]


def paired_inputs(
    examples: Sequence[Example], pad: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """One tensor over chosen (first B rows) then rejected (last B rows): one forward for both."""
    prompts = [e.prompt_ids for e in examples] + [e.rejected_prompt for e in examples]
    comps = [e.chosen_ids for e in examples] + [e.rejected_ids for e in examples]
    return join(prompts, comps, pad, device)


def single_inputs(
    examples: Sequence[Example], pad: int, device: torch.device, kl: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    prompts = [e.prompt_ids for e in examples]
    comps = [e.kl_completion_ids if kl else e.completion_ids for e in examples]
    return join(prompts, comps, pad, device)


def build_paired(
    logps: Tensor,
    mask: Tensor,
    log_sum_sq: Tensor | None,
    ref: Tensor | None,
) -> PreferenceBatch:
    """Split the stacked chosen/rejected rows into a :class:`PreferenceBatch` (ref: per-token or (2B,) sums)."""
    b = logps.shape[0] // 2
    kw: dict[str, Tensor | None] = dict(
        chosen_logps=logps[:b],
        rejected_logps=logps[b:],
        chosen_mask=mask[:b],
        rejected_mask=mask[b:],
    )
    if ref is not None:
        kw.update(ref_chosen_logps=ref[:b], ref_rejected_logps=ref[b:])
    if log_sum_sq is not None:
        kw.update(chosen_log_sum_sq_probs=log_sum_sq[:b], rejected_log_sum_sq_probs=log_sum_sq[b:])
    return PreferenceBatch(**kw)


def build_unpaired(
    logps: Tensor,
    mask: Tensor,
    labels: Sequence[bool | None],
    ref: Tensor | None,
    kl_logps: Tensor | None,
    ref_kl_logps: Tensor | None,
) -> UnpairedBatch:
    if any(lab is None for lab in labels):  # rows scored by reward: the rewarded batch derives labels
        labels_t = torch.zeros(len(labels), dtype=torch.bool, device=logps.device)
    else:
        labels_t = torch.tensor(list(labels), dtype=torch.bool, device=logps.device)
    return UnpairedBatch(
        logps=logps,
        mask=mask,
        labels=labels_t,
        ref_logps=ref,
        kl_logps=kl_logps,
        ref_kl_logps=ref_kl_logps,
    )


def build_sft(logps: Tensor, mask: Tensor) -> SFTBatch:
    return SFTBatch(logps=logps, mask=mask)
