"""Cross-modal / cross-lingual alignment losses (VideoLights, speech-LLM matching, word alignment, CALF,
sentence-embedding regression, SoftREPA, flow prior, LoL) and the family's batch checks: hand values, limiting
cases the papers imply, gradients, and errors that name the field."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import alignkit as ak
from alignkit.objectives.representation import EmbeddingBatch, PairBatch
from alignkit.objectives.representation.calf import BranchBatch
from alignkit.objectives.representation.flow_prior import FlowPriorBatch
from alignkit.objectives.representation.lol import LossSetBatch
from alignkit.objectives.representation.softrepa import DenoisingBatch
from alignkit.objectives.representation.speech_matching import SequencePairBatch
from alignkit.objectives.representation.videolights import SaliencyBatch
from alignkit.objectives.representation.word_alignment import WordAlignmentBatch, contextual_word_retrieval


def test_family_is_listed_by_modality_tags():
    names = {o.name for o in ak.list_objectives(family="representation")}
    assert len(names) == 25
    for tag in (
        "modality:text",
        "modality:image",
        "modality:audio",
        "modality:video",
        "modality:cross-modal",
    ):
        assert {o.name for o in ak.list_objectives(tag=tag)} & names, tag
    for o in ak.list_objectives(family="representation"):
        assert o.verification is not None and not o.needs_reference
        assert any(t.startswith("modality:") for t in o.tags)
    assert {c.name for c in ak.list_components(kind="metric", family="representation")} >= {
        "alignment",
        "uniformity",
    }


# ---- VideoLights (arXiv:2412.01558) ----


def _saliency_batch(pred=None):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 4, generator=g)
    clips = torch.randn(1, 5, 4, generator=g)
    sim = F.cosine_similarity(q, clips, dim=-1)
    return SaliencyBatch(
        q.expand(1, 3, 4), torch.ones(1, 3), clips, torch.ones(1, 5), saliency=sim, pred_saliency=pred
    )


def test_videolights_alignment_zero_when_similarity_profile_matches_saliency():
    b = _saliency_batch()
    lo, hi = b.saliency.min(), b.saliency.max()
    b.saliency = (b.saliency - lo) / (hi - lo)  # min-max scaled similarities = saliency
    assert ak.get("videolights_alignment")(b).loss.item() == pytest.approx(0.0, abs=1e-6)
    b.saliency = torch.rand(1, 5, generator=torch.Generator().manual_seed(3))
    assert ak.get("videolights_alignment")(b).loss.item() > 0.01


def test_videolights_hard_saliency_scales_with_epoch_and_vanishes_at_targets():
    b = _saliency_batch()
    b.pred_saliency = b.saliency.clone()
    assert ak.get("videolights_hard_saliency")(b).loss.item() == 0.0
    b.pred_saliency = (b.saliency + 0.3).requires_grad_()
    l0 = ak.get("videolights_hard_saliency")(b, epoch=0).loss
    l4 = ak.get("videolights_hard_saliency")(b, epoch=4).loss
    assert l4.item() == pytest.approx(5 * l0.item()) and l0.item() == pytest.approx(10 * 0.09, rel=1e-5)
    l0.backward()
    assert torch.isfinite(b.pred_saliency.grad).all()
    b.pred_saliency = None
    with pytest.raises(ValueError, match="pred_saliency"):
        ak.get("videolights_hard_saliency")(b)


# ---- speech encoder <-> LLM matching (arXiv:2406.17272) ----


def test_speech_matching_zero_for_equal_pooled_sequences_and_ignores_padding():
    text = torch.randn(2, 3, 4)
    speech = torch.cat([text, text, torch.full((2, 2, 4), 99.0)], dim=1).requires_grad_()  # padded frames
    mask = torch.cat([torch.ones(2, 6), torch.zeros(2, 2)], dim=1)
    b = SequencePairBatch(speech, mask, text, torch.ones(2, 3))
    for kind in ("cos_mean", "mse_mean"):
        assert ak.get("speech_llm_matching")(b, kind=kind).loss.item() == pytest.approx(0.0, abs=1e-6)
    b2 = SequencePairBatch(speech, mask, torch.randn(2, 3, 4), torch.ones(2, 3))
    out = ak.get("speech_llm_matching")(b2)
    out.loss.backward()
    assert speech.grad[:, 6:].abs().sum() == 0 and speech.grad[:, :6].abs().sum() > 0
    with pytest.raises(ValueError, match="SequencePairBatch.a_mask selects no position"):
        SequencePairBatch(speech, torch.zeros(2, 8), text, torch.ones(2, 3))


# ---- multilingual word alignment (arXiv:2002.03518) ----


def test_word_alignment_hand_value_zero_limit_and_retrieval():
    """source (1, 0), target (0, 1): ||.||^2 = 2; anchor moved by (0, 3): 9, lam = 0.5 -> 2 + 4.5."""
    b = WordAlignmentBatch(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 3.0]]), torch.zeros(1, 2)
    )
    assert ak.get("contextual_word_alignment")(b, lam=0.5).loss.item() == pytest.approx(6.5)
    x = torch.randn(6, 5)
    same = WordAlignmentBatch(x, x.clone(), x, x.clone())
    assert ak.get("contextual_word_alignment")(same).loss.item() == 0.0
    assert contextual_word_retrieval(x, x) == 1.0 and contextual_word_retrieval(x, x, csls_k=3) == 1.0
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    assert contextual_word_retrieval(x, x @ q) < 1.0  # a rotation of one language breaks retrieval


# ---- CALF (arXiv:2403.07300) ----


def test_calf_identical_branches_leave_only_the_task_loss():
    f = torch.randn(3, 4, 8)
    y, pred = torch.randn(4, 6), torch.randn(4, 6, requires_grad=True)
    out = ak.get("calf")(BranchBatch(f, f.clone(), pred, pred.detach().clone(), y))
    assert out.loss.item() == pytest.approx(F.mse_loss(pred, y).item())
    moved = ak.get("calf")(BranchBatch(f + 1.0, f, pred, pred.detach() + 1.0, y), task_weight=0.0)
    # smooth-L1 at |d| = 1 is 0.5 per element: 3 layers * 0.5 * 0.01 + 0.5 * 1.0
    assert moved.loss.item() == pytest.approx(3 * 0.5 * 0.01 + 0.5)
    moved.loss.backward()
    assert torch.isfinite(pred.grad).all()


# ---- sentence-embedding regression (arXiv:2305.01482) ----


def test_embedding_regression_zero_and_scale_invariance():
    t = torch.randn(4, 6)
    for kind in ("cosine", "mse", "l1"):
        assert ak.get("embedding_regression")(PairBatch(t, t), kind=kind).loss.item() == pytest.approx(
            0.0, abs=1e-6
        )
    p = torch.randn(4, 6)
    c1 = ak.get("embedding_regression")(PairBatch(p, t)).loss
    c2 = ak.get("embedding_regression")(PairBatch(3.0 * p, t)).loss
    assert c1.item() == pytest.approx(c2.item(), rel=1e-6)


# ---- SoftREPA (arXiv:2503.08250) ----


def test_softrepa_equal_errors_give_log_b_and_clear_diagonal_gives_zero():
    eps = torch.randn(4, 2, 3)
    same = DenoisingBatch(torch.zeros(4, 4, 2, 3), torch.zeros(4, 2, 3))
    assert ak.get("softrepa")(same).loss.item() == pytest.approx(math.log(4))
    pred = eps.unsqueeze(1) + 10.0 * (1 - torch.eye(4)).reshape(
        4, 4, 1, 1
    )  # exact only under the own caption
    out = ak.get("softrepa")(DenoisingBatch(pred.requires_grad_(), eps))
    assert out.loss.item() < 1e-30 and out.metrics["softrepa/accuracy"] == 1.0
    with pytest.raises(ValueError, match="DenoisingBatch.eps_pred has shape"):
        DenoisingBatch(torch.zeros(4, 3, 2, 3), torch.zeros(4, 2, 3))


# ---- flow prior (arXiv:2506.05240) ----


def test_flow_prior_loss_grows_with_distance_from_the_target_mean():
    """Target N(mu, I) with its exact velocity field v(x, t) = mu + (2t-1)/((1-t)^2+t^2) (x - t mu); the
    alignment loss over fixed (t, eps) draws is smallest at z = mu and grows with |z - mu| (1-D grid)."""
    mu = torch.tensor([2.0])

    def v(x, t):
        return mu + ((2 * t - 1) / ((1 - t) ** 2 + t**2)).unsqueeze(-1) * (x - t.unsqueeze(-1) * mu)

    g = torch.Generator().manual_seed(0)
    k = 4000
    noise, times = torch.randn(k, 1, 1, generator=g), torch.rand(k, 1, generator=g) * 0.98 + 0.01
    vals = [
        ak.get("flow_prior_alignment")(FlowPriorBatch(torch.tensor([[z]]), v, noise, times)).loss.item()
        for z in (2.0, 2.5, 3.0, 4.0, 6.0)
    ]
    assert vals == sorted(vals)
    z = torch.tensor([[0.0]], requires_grad=True)
    ak.get("flow_prior_alignment")(FlowPriorBatch(z, v, noise, times)).loss.backward()
    assert z.grad.item() < 0  # descent moves z towards mu = 2
    with pytest.raises(ValueError, match="noise and FlowPriorBatch.times must be given together"):
        FlowPriorBatch(z, v, noise=noise)


# ---- LoL (arXiv:2204.11545) ----


def test_lol_hand_value_and_gradient_only_on_violations():
    """losses [1, 2]: regulariser [2 - 1]_+ = 1 -> total 1 + 2 + 1 = 4; [2, 1] (non-increasing): 0."""
    lo = torch.tensor([[1.0, 2.0], [2.0, 1.0]], requires_grad=True)
    out = ak.get("loss_over_loss")(LossSetBatch(lo))
    assert out.losses.tolist() == pytest.approx([4.0, 3.0])
    out.loss.backward()
    # row 0: (1 - gamma, 1 + gamma) / B; row 1 has no violation: (1, 1) / B
    assert torch.allclose(lo.grad, torch.tensor([[0.0, 1.0], [0.5, 0.5]]))


# ---- batch checks name the field ----


def test_batches_name_the_bad_field():
    with pytest.raises(ValueError, match="PairBatch.a has shape"):
        PairBatch(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="PairBatch.b holds a non-finite value"):
        PairBatch(torch.randn(2, 4), torch.tensor([[0.0, 1, 2, float("nan")], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="PairBatch.logit_scale must be a scalar"):
        PairBatch(torch.randn(2, 4), torch.randn(2, 4), logit_scale=torch.ones(2))
    with pytest.raises(ValueError, match="EmbeddingBatch.labels must hold integer labels"):
        EmbeddingBatch(torch.randn(3, 2), torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"EmbeddingBatch.labels must have shape \(3,\)"):
        EmbeddingBatch(torch.randn(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="EmbeddingBatch.embeddings must be a floating-point tensor"):
        EmbeddingBatch(torch.ones(3, 2, dtype=torch.long), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="LossSetBatch.losses needs at least 2 revisions"):
        LossSetBatch(torch.rand(3, 1))
    with pytest.raises(TypeError, match="takes a PairBatch"):
        ak.get("clip")(EmbeddingBatch(torch.randn(3, 2), torch.tensor([0, 1, 1])))
