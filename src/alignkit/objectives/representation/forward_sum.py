"""AlignTTS's alignment loss: the forward-sum over every monotonic alignment of frames to tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from alignkit.objectives.representation._batches import check_float, example
from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

register_field(
    "frame_token_logps",
    "log p(frame j | token i) for every frame and token, (B, T_frames, N_tokens), with both lengths "
    "(AttentionAlignmentBatch)",
)


@dataclass
class AttentionAlignmentBatch:
    """``log_probs`` (B, T, N): log-likelihood of mel frame j under token (character) i's distribution (the
    mixture density network of AlignTTS, or an attention's log-scores); ``frame_lengths`` (B,) and
    ``token_lengths`` (B,) with token_lengths <= frame_lengths."""

    log_probs: Tensor
    frame_lengths: Tensor
    token_lengths: Tensor

    def __post_init__(self) -> None:
        self.log_probs = check_float("AttentionAlignmentBatch", "log_probs", self.log_probs, dims=3)
        b, t, n = self.log_probs.shape
        for name, value, hi in (
            ("frame_lengths", self.frame_lengths, t),
            ("token_lengths", self.token_lengths, n),
        ):
            if tuple(value.shape) != (b,) or value.is_floating_point():
                raise ValueError(f"AttentionAlignmentBatch.{name} must be integers of shape ({b},)")
            if (value < 1).any() or (value > hi).any():
                raise ValueError(f"AttentionAlignmentBatch.{name} must lie in [1, {hi}]")
        if (self.token_lengths > self.frame_lengths).any():
            raise ValueError(
                "AttentionAlignmentBatch.token_lengths exceeds frame_lengths: no monotonic alignment"
            )


def forward_log_alpha(log_probs: Tensor, frame_lengths: Tensor, token_lengths: Tensor) -> Tensor:
    """log alpha_T(N) per example (B,): the log-sum over monotonic alignments (each frame to one token, tokens
    in order, every token at least one frame; alpha_j(i) = (alpha_{j-1}(i) + alpha_{j-1}(i-1)) p(y_j | x_i))."""
    b, t, n = log_probs.shape
    neg = torch.full((b, 1), -torch.inf, dtype=log_probs.dtype, device=log_probs.device)
    alpha = torch.cat([log_probs[:, 0, :1], neg.expand(b, n - 1)], dim=1)
    out = torch.empty(b, dtype=log_probs.dtype, device=log_probs.device)
    idx = torch.arange(b, device=log_probs.device)
    done = frame_lengths == 1
    out = torch.where(done, alpha[idx, token_lengths - 1], out)
    for j in range(1, t):
        shifted = torch.cat([neg, alpha[:, :-1]], dim=1)
        alpha = torch.logaddexp(alpha, shifted) + log_probs[:, j]
        at_end = frame_lengths == j + 1
        out = torch.where(at_end, alpha[idx, token_lengths - 1], out)
    return out


def viterbi_durations(log_probs: Tensor, frame_length: int, token_length: int) -> Tensor:
    """The most likely monotonic alignment of one example (T, N) as per-token durations (sum = frame_length)."""
    lp = log_probs[:frame_length, :token_length].detach()
    t, n = lp.shape
    score = torch.full((t, n), -torch.inf, dtype=lp.dtype)
    move = torch.zeros((t, n), dtype=torch.bool)
    score[0, 0] = lp[0, 0]
    for j in range(1, t):
        stay = score[j - 1]
        adv = torch.cat([torch.tensor([-torch.inf], dtype=lp.dtype), score[j - 1, :-1]])
        move[j] = adv > stay
        score[j] = torch.maximum(stay, adv) + lp[j]
    durations = torch.zeros(n, dtype=torch.long)
    i = n - 1
    for j in range(t - 1, -1, -1):
        durations[i] += 1
        if j > 0 and move[j, i]:
            i -= 1
    return durations


@register_objective(
    name="forward_sum_alignment",
    aliases=("aligntts_alignment", "forward_sum"),
    paper="AlignTTS: Efficient Feed-Forward Text-to-Speech System without Explicit Alignment",
    arxiv="2003.01950",
    family="representation",
    needs_reference=False,
    batch_type=AttentionAlignmentBatch,
    requires=("frame_token_logps",),
    tags=("sequence-alignment", "monotonic", "tts", "modality:audio", "modality:cross-modal"),
    verification="library-parity",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation.forward_sum import AttentionAlignmentBatch
lp = torch.randn(2, 8, 3, requires_grad=True)
batch = AttentionAlignmentBatch(log_probs=lp.log_softmax(-1), frame_lengths=torch.tensor([8, 6]), token_lengths=torch.tensor([3, 2]))
out = ak.get("forward_sum_alignment")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def forward_sum_alignment(batch: AttentionAlignmentBatch, *, per_frame: bool = False) -> LossOutput:
    """AlignTTS: Efficient Feed-Forward Text-to-Speech System without Explicit Alignment (alignment loss,
    arXiv:2003.01950).

    The log-likelihood of the mel frames summed over every monotonic alignment to the characters (a forward
    algorithm, like HMM/CTC without blanks).

    Formula:
        alpha_1(1) = p(y_1 | x_1),  alpha_1(i > 1) = 0
        alpha_j(i) = (alpha_{j-1}(i) + alpha_{j-1}(i-1)) * p(y_j | x_i)        (in log space)
        L = -log alpha_T(N)       (per_frame=True: divided by T)

    Hyper-parameters:
        per_frame: False — the paper's loss is the total negative log-likelihood; True divides by the number of
            frames (as length-normalised forward-sum losses do).

    Equal to ``torch.nn.functional.ctc_loss`` with the tokens 1..N as target and a blank of probability 0
    (tested), the form NeMo's / RAD-TTS's ``ForwardSumLoss`` computes (those also add a small blank).
    """
    neg_log_alpha = -forward_log_alpha(batch.log_probs, batch.frame_lengths, batch.token_lengths)
    losses = neg_log_alpha / batch.frame_lengths.to(neg_log_alpha.dtype) if per_frame else neg_log_alpha
    return LossOutput(loss=losses.mean(), losses=losses, metrics={"align/nll": neg_log_alpha.mean().item()})
