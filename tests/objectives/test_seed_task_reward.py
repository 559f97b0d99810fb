"""Task-reward REINFORCE (arXiv:2302.08242): baselines, hand values, unbiasedness on a categorical policy."""

from __future__ import annotations

import pytest
import torch

import alignkit as ak
from alignkit.batches_extra import RewardedBatch

D = torch.float64


def _batch(logps, rewards, **kw):
    lp = torch.tensor(logps, dtype=D).unsqueeze(-1).requires_grad_()
    return RewardedBatch(logps=lp, rewards=torch.tensor(rewards, dtype=D), **kw), lp


def test_constant_reward_gives_no_gradient():
    b, lp = _batch([-1.0, -2.0, -0.5], [3.0, 3.0, 3.0])
    ak.get("task_reward")(b).loss.backward()
    assert lp.grad.abs().max() == 0


def test_two_samples_leave_one_out_advantages():
    b, lp = _batch([-1.0, -2.0], [1.0, 0.25])
    out = ak.get("task_reward")(b)
    # advantages +-(r1 - r2) = +-0.75: L = -mean(0.75 * -1, -0.75 * -2) = -0.375
    assert out.loss.item() == pytest.approx(-(0.75 * -1.0 + -0.75 * -2.0) / 2)
    out.loss.backward()
    assert lp.grad.flatten().tolist() == pytest.approx([-0.375, 0.375])


def test_groups_and_explicit_baselines():
    b, _ = _batch([-1.0, -1.0, -1.0, -1.0], [1.0, 3.0, 10.0, 20.0], group_ids=torch.tensor([0, 0, 1, 1]))
    out = ak.get("task_reward")(b, baseline="mean")
    assert out.metrics["advantage/abs_mean"] == pytest.approx((1 + 1 + 5 + 5) / 4)
    b2, _ = _batch([-1.0, -1.0], [1.0, 3.0], baselines=torch.tensor([0.0, 0.0], dtype=D))
    assert ak.get("task_reward")(b2).loss.item() == pytest.approx((1.0 + 3.0) / 2)
    with pytest.raises(ValueError, match="baseline"):
        ak.get("task_reward")(_batch([-1.0], [1.0])[0], baseline="median")


def test_gradient_is_unbiased_on_a_categorical_policy():
    g = torch.Generator().manual_seed(0)
    theta = torch.tensor([0.3, -0.2, 0.5], dtype=D, requires_grad=True)
    reward = torch.tensor([1.0, 0.0, 2.0], dtype=D)
    probs = torch.softmax(theta, 0).detach()
    exact = -(probs * reward * (torch.eye(3, dtype=D) - probs).T).sum(1)  # -grad E[R] = -sum_y p R (e_y - p)
    y = torch.multinomial(probs, 40000, replacement=True, generator=g)
    logp = torch.log_softmax(theta, 0)[y].unsqueeze(-1)
    out = ak.get("task_reward")(RewardedBatch(logps=logp, rewards=reward[y]))
    (grad,) = torch.autograd.grad(out.loss, theta)
    assert torch.allclose(grad, exact, atol=0.02)


def test_plain_unpaired_batch_uses_labels_and_bad_rewards():
    lp = -torch.rand(4, 3, dtype=D)
    b = ak.UnpairedBatch(logps=lp, labels=torch.tensor([1, 0, 1, 0]))
    assert ak.get("task_reward")(b).metrics["reward"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="rewards"):
        RewardedBatch(logps=lp, rewards=torch.ones(3))
    with pytest.raises(ValueError, match="shape"):
        ak.get("task_reward")(RewardedBatch(logps=lp, rewards=torch.ones(4, 2)))
