"""Supervised fine-tuning: token-level negative log-likelihood."""

from __future__ import annotations

from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch, SFTBatch


@register_objective(
    name="sft",
    verification="trl-parity",
    aliases=("nll", "cross_entropy"),
    family="sft",
    normalisation="token",
    paper="Training language models to follow instructions with human feedback",
    arxiv="2203.02155",
    needs_reference=False,
    aggregation="mean",
    tags=("supervised", "algorithm:pointwise", "feedback:demonstration", "data:off-policy"),
)
def sft(batch: SFTBatch | PreferenceBatch) -> LossOutput:
    """Supervised fine-tuning, the first stage of Training language models to follow instructions with human
    feedback (InstructGPT, arXiv:2203.02155): the negative log-likelihood of the target tokens, averaged over
    every target token in the batch. On a ``PreferenceBatch`` it reads the chosen completions (TRL's ``sft``
    loss type, and the SFT half of RPO-style mixes).

    Formula:
        L = -(1 / sum_i |y_i|) * sum_i sum_t log pi(y_i,t | x_i, y_i,<t)

    Hyper-parameters:
        (none)

    ``out.losses`` repeats the batch value for every example (so ``losses.mean() == loss``); the per-example
    mean NLL, averaged, is ``out.metrics["nll/per_example_mean"]``.
    """
    if isinstance(batch, PreferenceBatch):
        side = batch.chosen
    elif isinstance(batch, SFTBatch):
        side = batch.side
    else:
        raise TypeError(f"objective 'sft' takes an SFTBatch or a PreferenceBatch, got {type(batch).__name__}")
    loss = -side.seq.sum() / side.lengths.sum()
    per_example = (-side.seq / side.lengths).detach()
    return LossOutput(
        loss=loss,
        losses=loss.expand(side.seq.shape[0]),
        metrics={"nll": loss.item(), "nll/per_example_mean": per_example.mean().item()},
    )
