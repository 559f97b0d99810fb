"""NMLA (non-monotonic CTC) and AlignTTS's forward-sum: brute force over every alignment, and parity with
torch's ctc_loss (NMLA's monotonic case, the forward-sum as CTC without blanks)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import alignkit as ak
from alignkit.objectives.representation.forward_sum import AttentionAlignmentBatch, viterbi_durations
from alignkit.objectives.representation.nmla import (
    CTCBatch,
    expected_bigram_counts,
    expected_unigram_counts,
)


def _collapse(a, blank=0):
    out, prev = [], None
    for x in a:
        if x != prev and x != blank:
            out.append(x)
        prev = x
    return out


def _brute_counts(probs, grams):
    """E[count of each n-gram in collapse(a)] and E[#n-grams], enumerating all V^T alignments of one example."""
    t, v = probs.shape
    n = len(grams[0])
    exp = [0.0] * len(grams)
    total = 0.0
    for a in itertools.product(range(v), repeat=t):
        p = math.prod(probs[s, a[s]].item() for s in range(t))
        y = _collapse(a)
        ng = [tuple(y[i : i + n]) for i in range(len(y) - n + 1)]
        total += p * len(ng)
        for k, g in enumerate(grams):
            exp[k] += p * ng.count(tuple(g))
    return exp, total


def test_expected_ngram_counts_equal_enumeration_over_all_alignments():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(5, 3, generator=g, dtype=torch.float64), -1)  # T=5, V=3 (blank 0)
    frames = torch.ones(1, 5, dtype=torch.bool)
    uni = torch.tensor([[1, 2]])
    want, length = _brute_counts(probs, [[1], [2]])
    got = expected_unigram_counts(probs[None], frames, uni)[0]
    assert got.tolist() == pytest.approx(want, rel=1e-10)
    from alignkit.objectives.representation.nmla import _expected_bigram_total, _expected_length

    assert _expected_length(probs[None], frames, 0).item() == pytest.approx(length, rel=1e-10)
    bigrams = [[1, 2], [2, 1], [1, 1], [2, 2]]
    want2, total2 = _brute_counts(probs, bigrams)
    first = torch.tensor([[b[0] for b in bigrams]])
    second = torch.tensor([[b[1] for b in bigrams]])
    got2 = expected_bigram_counts(probs[None], frames, first, second, 0)[0]
    assert got2.tolist() == pytest.approx(want2, rel=1e-10)
    assert _expected_bigram_total(probs[None], frames, 0).item() == pytest.approx(total2, rel=1e-10)


def _ctc_batch(seed=0, t=8, v=6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(t, 2, v, generator=g, requires_grad=True)
    return logits, CTCBatch(
        log_probs=logits.log_softmax(-1),
        targets=torch.tensor([[1, 2, 3], [4, 4, 0]]),
        input_lengths=torch.tensor([t, t - 2]),
        target_lengths=torch.tensor([3, 2]),
    )


def test_nmla_monotonic_case_equals_torch_ctc_loss():
    logits, b = _ctc_batch()
    ours = ak.get("nmla")(b, ctc_weight=1.0).loss
    theirs = F.ctc_loss(b.log_probs, b.targets, b.input_lengths, b.target_lengths, reduction="mean")
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def _onehot(ids, v=5):
    return F.one_hot(torch.tensor([[i] for i in ids]), v).double().clamp_min(1e-12).log()  # (T, 1, V)


@pytest.mark.parametrize("ngram", [1, 2])
def test_nmla_perfect_output_has_f1_one(ngram):
    """One-hot frames spelling the target (no blanks, no repeats): F1 = 1, loss 0."""
    b = CTCBatch(_onehot([1, 3, 2]), torch.tensor([[1, 3, 2]]), torch.tensor([3]), torch.tensor([3]))
    assert ak.get("nmla")(b, ngram=ngram).loss.item() == pytest.approx(0.0, abs=1e-9)


def test_nmla_unigram_matching_is_non_monotonic_and_ctc_is_not():
    """Output 2 1 3 for target 1 3 2: every unigram matches (loss 0) while CTC finds no alignment; bigram
    matching shares none of (1,3), (3,2) with (2,1), (1,3)... except (1,3): match 1 of 2 -> F1 = 1/2."""
    tgt = torch.tensor([[1, 3, 2]])
    b = CTCBatch(_onehot([2, 1, 3]), tgt, torch.tensor([3]), torch.tensor([3]))
    assert ak.get("nmla")(b, ngram=1).loss.item() == pytest.approx(0.0, abs=1e-9)
    assert ak.get("nmla")(b, ngram=2).loss.item() == pytest.approx(0.5, abs=1e-9)
    assert ak.get("nmla")(b, ctc_weight=1.0).loss.item() > 5


def test_nmla_gradients_finite_and_padding_frames_ignored():
    logits, b = _ctc_batch(seed=2)
    out = ak.get("nmla")(b)
    out.loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert logits.grad[6:, 1].abs().sum() == 0  # example 1 has 6 frames
    with pytest.raises(ValueError, match="CTCBatch.targets must be ids"):
        CTCBatch(b.log_probs, torch.tensor([[0, 1, 2], [1, 2, 3]]), b.input_lengths, b.target_lengths)
    with pytest.raises(ValueError, match="ngram must be 1 or 2"):
        ak.get("nmla")(b, ngram=3)


# ---- AlignTTS forward-sum (arXiv:2003.01950) ----


def _brute_forward_sum(lp):
    """-log sum over monotonic alignments (frame j -> token i_j, i_1 = 0, i_T = N-1, steps of 0 or 1)."""
    t, n = lp.shape
    total = 0.0
    for steps in itertools.product((0, 1), repeat=t - 1):
        if sum(steps) != n - 1:
            continue
        i, s = 0, lp[0, 0].item()
        for j, st in enumerate(steps, start=1):
            i += st
            s += lp[j, i].item()
        total += math.exp(s)
    return -math.log(total)


def test_forward_sum_equals_enumeration_uniform_case_and_ctc():
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(2, 6, 3, generator=g, dtype=torch.float64).log_softmax(-1).requires_grad_()
    b = AttentionAlignmentBatch(lp, frame_lengths=torch.tensor([6, 4]), token_lengths=torch.tensor([3, 2]))
    out = ak.get("forward_sum_alignment")(b)
    assert out.losses[0].item() == pytest.approx(_brute_forward_sum(lp[0, :6, :3].detach()), rel=1e-10)
    assert out.losses[1].item() == pytest.approx(_brute_forward_sum(lp[1, :4, :2].detach()), rel=1e-10)
    # uniform p = 1/2 over T = 4 frames, N = 2 tokens: 3 paths -> -log(3 / 16)
    u = torch.full((1, 4, 2), math.log(0.5), dtype=torch.float64)
    ub = AttentionAlignmentBatch(u, torch.tensor([4]), torch.tensor([2]))
    assert ak.get("forward_sum_alignment")(ub).loss.item() == pytest.approx(-math.log(3 / 16))
    # CTC with a blank of probability 0 and targets 1..N sums over the same alignments
    blank = torch.full((2, 6, 1), -1e4, dtype=torch.float64)
    ctc = F.ctc_loss(
        torch.cat([blank, lp], -1).transpose(0, 1), torch.tensor([[1, 2, 3], [1, 2, 0]]),
        torch.tensor([6, 4]), torch.tensor([3, 2]), reduction="none",
    )  # fmt: skip
    assert out.losses.tolist() == pytest.approx(ctc.tolist(), rel=1e-8)
    out.loss.backward()
    assert torch.isfinite(lp.grad).all() and lp.grad[1, 4:].abs().sum() == 0


def test_viterbi_durations_sum_to_frames_and_follow_the_diagonal():
    lp = torch.full((6, 3), -5.0)
    for j, i in enumerate([0, 0, 1, 2, 2, 2]):
        lp[j, i] = 0.0
    d = viterbi_durations(lp, 6, 3)
    assert d.tolist() == [2, 1, 3] and d.sum().item() == 6
    with pytest.raises(ValueError, match="token_lengths exceeds frame_lengths"):
        AttentionAlignmentBatch(lp[None], torch.tensor([2]), torch.tensor([3]))
