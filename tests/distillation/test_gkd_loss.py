"""GKD's generalized JSD objective: a hand value, its limits, gradients, and parity with TRL 1.16's
``GKDTrainer.generalized_jsd_loss`` (the offline, lmbda = 0 case) in-process."""

from __future__ import annotations

import math

import pytest
import torch

import alignkit as ak
from alignkit.objectives.distillation import DistillationBatch, generalized_jsd


def _batch(n: int = 6, v: int = 9, seed: int = 0) -> DistillationBatch:
    g = torch.Generator().manual_seed(seed)
    return DistillationBatch(
        student_logits=torch.randn(n, v, generator=g, dtype=torch.float64).mul(2).requires_grad_(),
        teacher_logits=torch.randn(n, v, generator=g, dtype=torch.float64).mul(2),
    )


def test_hand_computed_two_class_value():
    """p_t = (3/4, 1/4), p_s = (1/2, 1/2). beta = 0: KL(p_t || p_s) = 3/4 log(3/2) + 1/4 log(1/2).
    beta = 1/2: M = (5/8, 3/8); JSD = 1/2 [3/4 log(6/5) + 1/4 log(2/3)] + 1/2 [1/2 log(4/5) + 1/2 log(4/3)]."""
    s = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    b = DistillationBatch(student_logits=s, teacher_logits=t)
    fkl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    rkl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    jsd = 0.5 * (0.75 * math.log(0.75 / 0.625) + 0.25 * math.log(0.25 / 0.375)) + 0.5 * (
        0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375)
    )
    gkd = ak.get("gkd")
    assert gkd(b, beta=0.0).loss.item() == pytest.approx(fkl, rel=1e-12)
    assert gkd(b, beta=1.0).loss.item() == pytest.approx(rkl, rel=1e-12)
    assert gkd(b, beta=0.5).loss.item() == pytest.approx(jsd, rel=1e-12)
    assert gkd(b, beta=0.5).metrics["kl/teacher_student"] == pytest.approx(fkl, rel=1e-12)


def test_student_equal_to_teacher_is_zero_and_jsd_symmetric_at_half():
    b = _batch()
    same = DistillationBatch(
        student_logits=b.teacher_logits.clone().requires_grad_(), teacher_logits=b.teacher_logits
    )
    for beta in (0.0, 0.3, 0.5, 1.0):
        assert ak.get("gkd")(same, beta=beta).loss.item() == pytest.approx(0.0, abs=1e-12)
    swapped = generalized_jsd(b.teacher_logits, b.student_logits.detach(), 0.5)
    assert torch.allclose(generalized_jsd(b.student_logits, b.teacher_logits, 0.5), swapped, atol=1e-12)
    # a shift of every logit of a position changes nothing (softmax invariance)
    shifted = DistillationBatch(student_logits=b.student_logits + 3.0, teacher_logits=b.teacher_logits - 1.0)
    assert ak.get("gkd")(shifted).loss.item() == pytest.approx(ak.get("gkd")(b).loss.item(), rel=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_matches_trl_generalized_jsd_loss(beta, temperature):
    """TRL's loss on (B, T, V) logits with labels (-100 off the completion) equals ours on the N labelled
    positions; gradients too."""
    from trl.experimental.gkd import GKDTrainer

    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 5, 11, generator=g, dtype=torch.float64) * 2
    t = torch.randn(2, 5, 11, generator=g, dtype=torch.float64) * 2
    labels = torch.tensor([[-100, 3, 4, 5, -100], [-100, -100, 1, 2, 7]])
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    trl = GKDTrainer.generalized_jsd_loss(s1, t, labels=labels, beta=beta, temperature=temperature)
    m = labels != -100
    ours = ak.get("gkd")(
        DistillationBatch(student_logits=s2[m], teacher_logits=t[m]), beta=beta, temperature=temperature
    )
    assert ours.loss.item() == pytest.approx(trl.item(), rel=1e-10, abs=1e-14)
    trl.backward()
    ours.loss.backward()
    assert torch.allclose(s1.grad, s2.grad, atol=1e-12)


def test_gradients_finite_and_flow_to_the_student_only():
    b = _batch()
    teacher = b.teacher_logits.clone().requires_grad_()
    out = ak.get("gkd")(DistillationBatch(student_logits=b.student_logits, teacher_logits=teacher), beta=0.5)
    out.loss.backward()
    assert torch.isfinite(b.student_logits.grad).all() and b.student_logits.grad.abs().sum() > 0
    assert teacher.grad is None
    # a small step against the gradient lowers the loss
    with torch.no_grad():
        moved = b.student_logits - 0.1 * b.student_logits.grad
    assert (
        ak.get("gkd")(DistillationBatch(student_logits=moved, teacher_logits=b.teacher_logits)).loss
        < out.loss
    )


def test_bad_hyper_parameters_and_input_are_refused():
    b = _batch()
    with pytest.raises(ValueError, match="beta"):
        ak.get("gkd").resolve(beta=1.5)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(b.student_logits, b.teacher_logits, beta=-0.1)
    with pytest.raises(ValueError, match="temperature"):
        generalized_jsd(b.student_logits, b.teacher_logits, temperature=0.0)
    with pytest.raises(ValueError, match="teacher_logits"):
        DistillationBatch(student_logits=torch.zeros(3, 4), teacher_logits=torch.zeros(3, 5))
