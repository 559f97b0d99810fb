"""NMLA: non-monotonic latent alignments for CTC — expected n-gram matching F1 instead of the CTC likelihood."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.representation._batches import check_float, example
from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

register_field(
    "ctc_outputs",
    "per-frame log-probabilities over the vocabulary with a blank, (T, B, V), plus input and target lengths "
    "(CTCBatch)",
)


@dataclass
class CTCBatch:
    """A CTC batch in ``torch.nn.functional.ctc_loss``'s layout: ``log_probs`` (T, B, V) log-softmax outputs,
    ``targets`` (B, S) padded target ids (never the blank), ``input_lengths`` (B,), ``target_lengths`` (B,)."""

    log_probs: Tensor
    targets: Tensor
    input_lengths: Tensor
    target_lengths: Tensor
    blank: int = 0

    def __post_init__(self) -> None:
        self.log_probs = check_float("CTCBatch", "log_probs", self.log_probs, dims=3)
        t, b, v = self.log_probs.shape
        if self.targets.dim() != 2 or self.targets.shape[0] != b or self.targets.is_floating_point():
            raise ValueError(
                f"CTCBatch.targets must be integer ids of shape ({b}, S); got {tuple(self.targets.shape)}"
            )
        for name, value in (("input_lengths", self.input_lengths), ("target_lengths", self.target_lengths)):
            if tuple(value.shape) != (b,) or value.is_floating_point():
                raise ValueError(
                    f"CTCBatch.{name} must be integers of shape ({b},); got {tuple(value.shape)}"
                )
        if (self.input_lengths > t).any() or (self.input_lengths < 1).any():
            raise ValueError(f"CTCBatch.input_lengths must lie in [1, {t}]")
        if (self.target_lengths > self.targets.shape[1]).any() or (self.target_lengths < 1).any():
            raise ValueError(f"CTCBatch.target_lengths must lie in [1, {self.targets.shape[1]}]")
        if not 0 <= self.blank < v:
            raise ValueError(f"CTCBatch.blank must be a vocabulary index in [0, {v}); got {self.blank}")
        valid = torch.arange(self.targets.shape[1]) < self.target_lengths.cpu().unsqueeze(1)
        tg = self.targets.cpu()[valid]
        if (tg == self.blank).any() or (tg < 0).any() or (tg >= v).any():
            raise ValueError(f"CTCBatch.targets must be ids in [0, {v}) other than the blank {self.blank}")
        if (self.log_probs.detach() > 1e-4).any():
            raise ValueError("CTCBatch.log_probs holds a positive value: pass log-softmax outputs")


def _frame_mask(batch: CTCBatch) -> Tensor:
    t = batch.log_probs.shape[0]
    return (
        torch.arange(t, device=batch.log_probs.device).unsqueeze(1) < batch.input_lengths.unsqueeze(0)
    ).T  # (B, T)


def expected_unigram_counts(probs: Tensor, frames: Tensor, tokens: Tensor) -> Tensor:
    """E[count of token g in the collapsed CTC output] for the ids ``tokens`` (B, J): probs (B, T, V),
    frames (B, T) bool. A token is emitted at t when a_t = g and a_{t-1} != g:
    E[C_g] = sum_t p_t(g) - sum_{t >= 1} p_{t-1}(g) p_t(g)."""
    p = probs * frames.unsqueeze(-1)
    pg = p.gather(2, tokens.unsqueeze(1).expand(-1, p.shape[1], -1))  # (B, T, J)
    return pg.sum(1) - (pg[:, 1:] * pg[:, :-1]).sum(1)


def _blank_bridge(probs: Tensor, frames: Tensor, blank: int) -> Tensor:
    """B[t, t'] = prod_{s=t+1}^{t'-1} p_s(blank) for t < t' (both valid frames), else 0: (B, T, T)."""
    pb = torch.where(frames, probs[..., blank], torch.ones_like(probs[..., blank]))
    c = torch.cumsum(torch.log(pb.clamp_min(1e-30)), dim=1)  # inclusive
    log_b = c.unsqueeze(1) - c.unsqueeze(2)  # [t, t'] = c[t'] - c[t]
    log_b = log_b - torch.log(pb.clamp_min(1e-30)).unsqueeze(1)  # drop s = t'
    t = probs.shape[1]
    upper = torch.triu(torch.ones(t, t, dtype=torch.bool, device=probs.device), diagonal=1)
    both = frames.unsqueeze(2) & frames.unsqueeze(1) & upper
    return torch.where(both, log_b.exp(), torch.zeros_like(log_b))


def expected_bigram_counts(
    probs: Tensor, frames: Tensor, first: Tensor, second: Tensor, blank: int
) -> Tensor:
    """E[count of the bigram (first_j, second_j) in the collapsed output], (B, J): the run of g1 ending at t is
    followed by the run of g2 starting at t' when a_t = g1, a_t' = g2, every frame between is blank, and (for
    t' = t + 1) g1 != g2."""
    p = probs * frames.unsqueeze(-1)
    t = p.shape[1]
    p1 = p.gather(2, first.unsqueeze(1).expand(-1, t, -1))
    p2 = p.gather(2, second.unsqueeze(1).expand(-1, t, -1))
    bridge = _blank_bridge(probs, frames, blank)
    e = torch.einsum("btj,btu,buj->bj", p1, bridge, p2)
    merged = (p1[:, :-1] * p2[:, 1:]).sum(1) * (first == second)
    return e - merged


def _expected_length(probs: Tensor, frames: Tensor, blank: int) -> Tensor:
    p = probs * frames.unsqueeze(-1)
    nb = 1.0 - probs[..., blank]
    stay = (p[:, 1:] * p[:, :-1]).sum(-1) - p[:, 1:, blank] * p[:, :-1, blank]
    return (nb * frames).sum(1) - stay.sum(1)


def _expected_bigram_total(probs: Tensor, frames: Tensor, blank: int) -> Tensor:
    nb = (1.0 - probs[..., blank]) * frames
    bridge = _blank_bridge(probs, frames, blank)
    p = probs * frames.unsqueeze(-1)
    same = (p[:, :-1] * p[:, 1:]).sum(-1) - p[:, :-1, blank] * p[:, 1:, blank]
    return torch.einsum("bt,btu,bu->b", nb, bridge, nb) - same.sum(1)


def _clipped_match(expected: Tensor, keys: Tensor, valid: Tensor) -> Tensor:
    """sum over distinct target n-grams g of min(E[C_g], C_g(y)): keys (B, J) identify n-grams."""
    eq = (keys.unsqueeze(2) == keys.unsqueeze(1)) & valid.unsqueeze(1) & valid.unsqueeze(2)
    count = eq.sum(2).clamp_min(1).to(expected.dtype)  # C_g(y) at each position
    return (torch.minimum(expected, count) / count * valid).sum(1)


@register_objective(
    name="nmla",
    aliases=("non_monotonic_ctc", "ctc_ngram_f1"),
    paper="Non-Monotonic Latent Alignments for CTC-Based Non-Autoregressive Machine Translation",
    arxiv="2210.03953",
    family="representation",
    needs_reference=False,
    batch_type=CTCBatch,
    requires=("ctc_outputs",),
    tags=("sequence-alignment", "ctc", "non-autoregressive", "modality:text", "modality:audio"),
    verification="reconstruction",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation.nmla import CTCBatch
logits = torch.randn(10, 2, 6, requires_grad=True)
batch = CTCBatch(log_probs=logits.log_softmax(-1), targets=torch.tensor([[1, 2, 3], [4, 5, 0]]),
                 input_lengths=torch.tensor([10, 8]), target_lengths=torch.tensor([3, 2]))
out = ak.get("nmla")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def nmla(batch: CTCBatch, *, ngram: int = 2, ctc_weight: float = 0.0) -> LossOutput:
    """Non-Monotonic Latent Alignments for CTC-Based Non-Autoregressive Machine Translation (NMLA,
    arXiv:2210.03953).

    CTC sums over *monotonic* alignments of the output to the target. NMLA instead rewards the expected
    n-gram overlap of the collapsed output with the target, in any order, as an F1; the model is pretrained
    with CTC (ctc_weight = 1, exactly torch's ``ctc_loss``) and fine-tuned with the F1 loss.

    Formula:
        p_t = exp(log_probs[t]),  a ~ prod_t p_t(a_t),  collapse(a) = remove repeats then blanks
        E[C_g]  = sum_t p_t(g) - sum_t p_{t-1}(g) p_t(g)                           (unigram g)
        E[C_gh] = sum_{t < t'} p_t(g) p_t'(h) prod_{t<s<t'} p_s(blank) - [g = h] sum_t p_t(g) p_{t+1}(g)
        match_n = sum_{n-gram g of y} min(E[C_g], C_g(y)),   E|a|_n = expected number of n-grams of collapse(a)
        F1_n = 2 match_n / (E|a|_n + |y|_n)
        L = ctc_weight * CTC(y | x) / |y| + (1 - ctc_weight) * (1 - F1_n)
        (CTC(y|x)/|y| averaged over the batch is ctc_loss(..., reduction="mean"))

    Hyper-parameters:
        ngram: 2 — 1 (unigram) or 2 (bigram) matching; the paper's best results use bigrams (abstract:
            "bigram ... matching"; recalled, not re-checked).
        ctc_weight: 0.0 — 1.0 is the CTC pretraining stage, 0.0 the NMLA fine-tuning stage (the paper trains
            in that order).

    Reconstruction: the expected counts are derived here from the CTC output distribution (checked by brute
    force over all alignments in the tests) and clipped as min(E[C], C(y)); the paper's exact clipping and
    normalisation were not re-read. Invariant the paper claims: permuting the output frames leaves the
    unigram F1 unchanged (CTC does not).
    """
    if ngram not in (1, 2):
        raise ValueError(f"ngram must be 1 or 2; got {ngram}")
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must lie in [0, 1]; got {ctc_weight}")
    lp = batch.log_probs
    probs = lp.exp().transpose(0, 1)  # (B, T, V)
    frames = _frame_mask(batch)
    s = batch.targets.shape[1]
    tgt = batch.targets.long().clamp(0, lp.shape[-1] - 1)  # padding may hold any id: keep gathers in range
    valid = torch.arange(s, device=lp.device).unsqueeze(0) < batch.target_lengths.unsqueeze(1)
    ylen = batch.target_lengths.to(lp.dtype)
    if ngram == 1:
        match = _clipped_match(expected_unigram_counts(probs, frames, tgt), tgt, valid)
        denom = _expected_length(probs, frames, batch.blank) + ylen
    else:
        v = lp.shape[-1]
        first, second = tgt[:, :-1], tgt[:, 1:]
        bvalid = valid[:, 1:]
        e = expected_bigram_counts(probs, frames, first, second, batch.blank)
        match = _clipped_match(e, first * v + second, bvalid)
        denom = _expected_bigram_total(probs, frames, batch.blank) + (ylen - 1)
    f1 = 2 * match / denom.clamp_min(1e-8)
    losses = (1 - ctc_weight) * (1 - f1)
    if ctc_weight > 0:
        ctc = F.ctc_loss(
            lp, batch.targets, batch.input_lengths, batch.target_lengths, blank=batch.blank, reduction="none"
        )
        losses = losses + ctc_weight * ctc / ylen
    return LossOutput(loss=losses.mean(), losses=losses, metrics={f"nmla/f1_{ngram}gram": f1.mean().item()})
