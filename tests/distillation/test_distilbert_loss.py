"""DistilBERT's triple loss: hand values, limiting cases, gradients, TRL parity of the KL term."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import alignkit as ak
from alignkit.objectives.distillation import DistillationBatch, hidden_cosine, soft_target_kl


def _batch(**kw):
    g = torch.Generator().manual_seed(0)
    d = dict(
        student_logits=torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True),
        teacher_logits=torch.randn(5, 7, generator=g, dtype=torch.float64),
        mlm_labels=torch.tensor([1, -100, 3, 6, -100]),
        student_hidden=torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True),
        teacher_hidden=torch.randn(2, 3, 4, generator=g, dtype=torch.float64),
        hidden_mask=torch.tensor([[1, 1, 0], [1, 1, 1]]),
    )
    d.update(kw)
    return DistillationBatch(**d)


def test_hand_computed_two_class_value():
    """Two positions, 2 classes, T = 1: student logits (0, 0), teacher (log 3, 0) -> p_t = (3/4, 1/4), p_s = (1/2,
    1/2); KL = 3/4 log(3/2) + 1/4 log(1/2). One MLM target (class 0): CE = log 2. Hidden states (1, 0) vs (1, 1):
    1 - cos = 1 - 1/sqrt(2)."""
    s = torch.zeros(2, 2, dtype=torch.float64)
    t = torch.tensor([[math.log(3), 0.0]] * 2, dtype=torch.float64)
    b = DistillationBatch(
        student_logits=s,
        teacher_logits=t,
        mlm_labels=torch.tensor([0, -100]),
        student_hidden=torch.tensor([[[1.0, 0.0]]], dtype=torch.float64),
        teacher_hidden=torch.tensor([[[1.0, 1.0]]], dtype=torch.float64),
        hidden_mask=torch.ones(1, 1),
    )
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    out = ak.get("distilbert")(b, temperature=1.0)
    expect = 5.0 * kl + 2.0 * math.log(2) + 1.0 * (1 - 1 / math.sqrt(2))
    assert out.loss.item() == pytest.approx(expect, rel=1e-12)
    assert out.metrics["loss_ce"] == pytest.approx(kl, rel=1e-12)


def test_student_equal_to_teacher_zeroes_kd_and_cosine():
    b = _batch()
    same = DistillationBatch(
        student_logits=b.teacher_logits.clone().requires_grad_(),
        teacher_logits=b.teacher_logits,
        student_hidden=b.teacher_hidden * 3.0,  # cosine ignores scale
        teacher_hidden=b.teacher_hidden,
        hidden_mask=b.hidden_mask,
    )
    out = ak.get("distilbert")(same)
    assert out.loss.item() == pytest.approx(0.0, abs=1e-12)


def test_kl_term_matches_trl_generalized_jsd_beta0():
    """TRL's GKD loss with beta = 0 is KL(teacher || student) at temperature T, summed over the vocabulary and
    averaged over positions ('batchmean'); DistilBERT's term is that times T^2."""
    from trl.experimental.gkd import GKDTrainer

    b = _batch()
    for T in (1.0, 2.0, 4.0):
        ours = soft_target_kl(b.student_logits, b.teacher_logits, T)
        trl = GKDTrainer.generalized_jsd_loss(
            b.student_logits.unsqueeze(0), b.teacher_logits.unsqueeze(0), beta=0.0, temperature=T
        )
        # TRL's batchmean divides by the batch dim (1 here), so divide by the N positions ourselves.
        assert ours.item() == pytest.approx(T**2 * trl.item() / b.student_logits.shape[0], rel=1e-10)


def test_cosine_term_matches_torch_cosine_embedding_loss():
    b = _batch()
    m = b.hidden_mask.bool()
    ref = torch.nn.CosineEmbeddingLoss()(b.student_hidden[m], b.teacher_hidden[m], torch.ones(int(m.sum())))
    assert hidden_cosine(b.student_hidden, b.teacher_hidden, b.hidden_mask).item() == pytest.approx(
        ref.item()
    )


def test_t_squared_keeps_gradient_scale():
    """For large T the gradient of KL(p_t^T || p_s^T) w.r.t. the student logits shrinks like 1/T^2; the T^2 factor
    keeps it near (z_s - z_t) / (V ... ) — the ratio of gradient norms at T = 8 and T = 16 stays close to 1."""
    b = _batch()
    norms = []
    for T in (8.0, 16.0):
        s = b.student_logits.detach().clone().requires_grad_()
        soft_target_kl(s, b.teacher_logits, T).backward()
        norms.append(s.grad.norm().item())
    assert norms[1] / norms[0] == pytest.approx(1.0, abs=0.05)


def test_gradients_finite_and_teacher_untouched():
    t = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    b = _batch(teacher_logits=t)
    out = ak.get("distilbert")(b)
    out.loss.backward()
    assert torch.isfinite(b.student_logits.grad).all() and b.student_logits.grad.abs().sum() > 0
    assert torch.isfinite(b.student_hidden.grad).all() and b.student_hidden.grad[0, 2].abs().sum() == 0
    assert t.grad is None  # the teacher is detached


def test_optional_terms_and_alpha_zero():
    b = _batch()
    only_kd = DistillationBatch(student_logits=b.student_logits, teacher_logits=b.teacher_logits)
    out = ak.get("distilbert")(only_kd)
    assert out.metrics["loss_mlm"] == 0 and out.metrics["loss_cos"] == 0
    assert out.loss.item() == pytest.approx(5.0 * out.metrics["loss_ce"])
    full = ak.get("distilbert")(b, alpha_mlm=0.0, alpha_cos=0.0)
    assert full.loss.item() == pytest.approx(5.0 * full.metrics["loss_ce"])
    ce = F.cross_entropy(b.student_logits, b.mlm_labels, ignore_index=-100)
    assert ak.get("distilbert")(b).metrics["loss_mlm"] == pytest.approx(ce.item())


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(teacher_logits=torch.randn(5, 6)), "teacher_logits has shape"),
        (dict(mlm_labels=torch.tensor([1, 2, 3, 99, -100])), "mlm_labels holds ids"),
        (dict(hidden_mask=None), "go together"),
        (dict(student_logits=torch.tensor([[float("nan")] * 7] * 5)), "non-finite"),
    ],
)
def test_bad_input_names_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        _batch(**kw)


def test_registered_spec():
    obj = ak.get("distilbert")
    assert obj.defaults == {"temperature": 2.0, "alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0}
    assert obj.requires_fields() == ("student_logits", "teacher_logits")
    assert "teacher_hidden_states" in obj.spec.optional and obj.verification == "trl-parity"
