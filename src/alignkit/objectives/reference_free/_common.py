"""Shared pieces of the reference-free paired objectives (CPO, SimPO, AlphaPO, ORPO, beta-ORPO, beta-ASFT)."""

from __future__ import annotations

from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pair_terms, preference_metrics
from alignkit.types import LossOutput, PreferenceBatch


def reference_free_terms(batch: PreferenceBatch, name: str) -> PairTerms:
    return pair_terms(batch, needs_reference=False, why=f"objective {name!r}")


def chosen_nll(t: PairTerms) -> Tensor:
    """Token-mean NLL of the chosen completions over the whole batch (TRL's cross-entropy term)."""
    return -t.batch.chosen.seq.sum() / t.batch.chosen.lengths.sum()


def mean_logps(t: PairTerms, name: str) -> tuple[Tensor, Tensor]:
    t.batch.require_lengths(name)
    return t.chosen_logps / t.chosen_lengths, t.rejected_logps / t.rejected_lengths


def finish(
    t: PairTerms,
    pref_losses: Tensor,
    chosen_rewards: Tensor,
    rejected_rewards: Tensor,
    nll: Tensor | None = None,
    nll_weight: float = 0.0,
) -> LossOutput:
    """Batch loss = mean(pref) + nll_weight * nll; ``losses`` spread the batch-level NLL over examples."""
    metrics = preference_metrics(chosen_rewards, rejected_rewards, t)
    losses = pref_losses
    if nll is not None:
        losses = pref_losses + nll_weight * nll
        metrics["nll_loss"] = nll.item()
    return LossOutput(loss=losses.mean(), losses=losses, metrics=metrics)
