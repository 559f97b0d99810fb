from __future__ import annotations

import math

import pytest
import torch

from alignkit.safety import BoosterHook, LisaHook
from tests.safety._util import HARMFUL, REFUSALS, Quad, fake_ctx, run, same_weights, sft_rows

A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)


def quad_loss(ctx, pairs):
    w = ctx.model.w
    return 0.5 * w @ A @ w


def test_booster_gradient_matches_closed_form_on_quadratic():
    m = Quad([1.0, -2.0])
    ctx = fake_ctx(m)
    m.w.grad = torch.tensor([0.3, 0.1], dtype=torch.float64)  # grad f from the trainer's backward
    w0 = m.w.detach().clone()
    hook = BoosterHook([([1], [2])], lam=5.0, alpha=0.1, loss_fn=quad_loss)
    hook.on_after_backward(ctx)
    gh = A @ w0
    # grad h(w) - grad h(w - alpha gh/||gh||) = alpha A gh / ||gh||
    expected = torch.tensor([0.3, 0.1], dtype=torch.float64) + 5.0 * 0.1 * (A @ gh) / (gh.norm() + 1e-7)
    torch.testing.assert_close(m.w.grad, expected)
    assert torch.equal(m.w.detach(), w0)  # weights restored bit-exactly
    assert hook.last["booster/harmful_loss"] > hook.last["booster/harmful_loss_perturbed"]


def test_booster_strength_zero_is_plain_training_step_for_step():
    plain = run()
    boost = run([BoosterHook(HARMFUL, lam=0.0, batch_size=2)])
    assert [h["loss"] for h in plain.history] == [h["loss"] for h in boost.history]
    assert same_weights(plain.model, boost.model)


def test_booster_trains_with_finite_grads_and_logs():
    r = run([BoosterHook(HARMFUL, lam=5.0, alpha=0.1, batch_size=2)], steps=2)
    for h in r.history:
        assert math.isfinite(h["grad_norm"]) and math.isfinite(h["booster/harmful_loss"])
    assert not same_weights(run(steps=2).model, r.model)


def test_booster_errors_name_the_field():
    with pytest.raises(ValueError, match="completion_ids"):
        BoosterHook([([1, 2], [])])
    with pytest.raises(ValueError, match="lam"):
        BoosterHook(HARMFUL, lam=-1)


def test_lisa_rho_zero_one_state_is_plain_finetuning():
    plain = run()
    lisa = run([LisaHook([], rho=0.0, alignment_steps=0, finetune_steps=5)])
    assert [h["loss"] for h in plain.history] == [h["loss"] for h in lisa.history]
    assert same_weights(plain.model, lisa.model)


def test_lisa_state_schedule_matches_official_check_mode():
    hook = LisaHook(REFUSALS, rho=1.0, alignment_steps=1, finetune_steps=2, batch_size=2, proximal_start=0.0)
    r = run([hook], steps=6)
    assert [h["lisa/state"] for h in r.history] == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    # the proximal term to the alignment snapshot is 0 right after the switch, then positive
    assert r.history[1]["hook/LisaHook"] == 0.0 and r.history[2]["hook/LisaHook"] > 0
    assert r.history[3]["lisa/proximal"] == 0.0  # w_ft is the iterate at the switch
    assert all(math.isfinite(h["grad_norm"]) for h in r.history)


def test_lisa_alignment_state_ignores_user_data():
    def lisa():
        return LisaHook(REFUSALS, rho=1.0, alignment_steps=100, finetune_steps=100, batch_size=2)

    a = run([lisa()], rows=sft_rows(seed=1))
    b = run([lisa()], rows=sft_rows(seed=2))
    assert same_weights(a.model, b.model)
    assert not same_weights(a.model, run(rows=sft_rows(seed=1)).model)


def test_lisa_alignment_gradient_hand_check():
    m = Quad([1.0, -2.0])
    ctx = fake_ctx(m, total_steps=10)
    hook = LisaHook(
        [([1], [2])], rho=2.0, alignment_steps=5, finetune_steps=5, proximal_start=0.0, loss_fn=quad_loss
    )
    hook.on_train_begin(ctx)
    hook.w_ft = {"w": torch.tensor([0.0, 0.0], dtype=torch.float64)}
    hook.steps, hook.clock = 1, 1  # mid alignment state, past the proximal start
    hook.on_step_begin(ctx)
    m.w.grad = torch.tensor([100.0, 100.0], dtype=torch.float64)  # user gradient: discarded
    hook.on_after_backward(ctx)
    w = m.w.detach()
    torch.testing.assert_close(m.w.grad, A @ w + 2.0 * (w - 0.0))
