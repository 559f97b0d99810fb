"""LongAlign's loss weighting for packed SFT: every sequence counts equally, however it is packed."""

from __future__ import annotations

from alignkit.registry import register_objective
from alignkit.types import LossOutput, PreferenceBatch, SFTBatch


@register_objective(
    name="longalign_sft",
    aliases=("sequence_mean_sft", "packing_loss_weighting"),
    family="sft",
    paper="LongAlign: A Recipe for Long Context Alignment of Large Language Models",
    arxiv="2401.18058",
    needs_reference=False,
    aggregation="mean",
    normalisation="example",
    verification="official-code-parity",
    tags=("supervised", "packing", "algorithm:pointwise", "feedback:demonstration", "data:off-policy"),
)
def longalign_sft(batch: SFTBatch | PreferenceBatch) -> LossOutput:
    """LongAlign: A Recipe for Long Context Alignment of Large Language Models (arXiv:2401.18058), §3.2 loss
    weighting.

    With packing, a token mean over the pack lets long sequences dominate the loss (and short ones vanish).
    LongAlign weights each target token by 1/N_k (N_k: target tokens of its sequence) and divides by K, the
    number of sequences in the global batch, so each sequence counts equally — the mean over sequences of their
    mean NLL. The trainer's per-example normalisation makes K the global batch under gradient accumulation and
    DDP, and the value does not depend on how sequences are packed (or whether they are).

    Formula:
        L = (1 / K) * sum_{k=1..K} (1 / N_k) * sum_{j in seq k} -log pi(y_kj | x_k, y_k,<j)

    Hyper-parameters:
        (none)

    Source: the official code THUDM/LongAlign (``sort_and_group.py``: per-token weight ``1 / weight.sum()`` of
    its sequence; ``dataset.py``: the per-step divisor ``nums`` is the summed weights, i.e. the number of
    sequences across GPUs). The official loader doubles the weights of its first 32 packs (a memory warm-up
    artefact) — not reproduced. Sorted batching, the paper's alternative, is ``TrainConfig.sorted_batching``.
    On a ``PreferenceBatch`` it reads the chosen completions.
    """
    if isinstance(batch, PreferenceBatch):
        side = batch.chosen
    elif isinstance(batch, SFTBatch):
        side = batch.side
    else:
        raise TypeError(
            f"objective 'longalign_sft' takes an SFTBatch or a PreferenceBatch, got {type(batch).__name__}"
        )
    losses = -side.seq / side.lengths
    loss = losses.mean()
    return LossOutput(loss=loss, losses=losses, metrics={"nll/per_example_mean": loss.item()})
