"""Shared pieces of the unpaired (desirable / undesirable) objectives."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.types import UnpairedBatch


def logratios(batch: UnpairedBatch, name: str) -> Tensor:
    ref = batch.require_reference(f"objective {name!r}")
    return batch.side.seq - ref.seq


def batch_kl(batch: UnpairedBatch, name: str) -> Tensor:
    """KTO's reference point: the batch estimate of KL(pi || ref) from mismatched pairs, clamped at 0, no grad."""
    if batch.kl_logps is None or batch.ref_kl_logps is None:
        raise ValueError(
            f"objective {name!r} estimates the KL term from mismatched prompt/completion pairs: kl_logps and "
            "ref_kl_logps are missing from the batch"
        )
    return (batch.kl_logps - batch.ref_kl_logps).mean().detach().clamp(min=0)


def unpaired_metrics(batch: UnpairedBatch, rewards: Tensor) -> dict[str, float]:
    rewards = rewards.detach()
    lab = batch.labels
    m: dict[str, float] = {}
    logps = batch.side.seq.detach()
    if lab.any():
        m["rewards/chosen"] = rewards[lab].mean().item()
        m["logps/chosen"] = logps[lab].mean().item()
    if (~lab).any():
        m["rewards/rejected"] = rewards[~lab].mean().item()
        m["logps/rejected"] = logps[~lab].mean().item()
    if lab.any() and (~lab).any():
        m["rewards/margins"] = m["rewards/chosen"] - m["rewards/rejected"]
    return m


def weighted(
    batch: UnpairedBatch, chosen_losses: Tensor, rejected_losses: Tensor, dw: float, uw: float
) -> Tensor:
    return torch.where(batch.labels, dw * chosen_losses, uw * rejected_losses)
