"""Transformed and combined rewards (arXiv:2402.00742): properties of log sigma(r - r_ref) and the objective."""

from __future__ import annotations

import math

import pytest
import torch

import alignkit as ak
from alignkit.batches_extra import RewardedBatch
from alignkit.objectives.policy_gradient.reward_transform import combine_rewards, lsc_transform

D = torch.float64


def test_transform_properties():
    r = torch.linspace(-20, 20, 81, dtype=D, requires_grad=True)
    u = lsc_transform(r, 0.0)
    assert (u <= 0).all()
    assert lsc_transform(torch.tensor(1.5, dtype=D), 1.5).item() == pytest.approx(-math.log(2))
    (slope,) = torch.autograd.grad(u.sum(), r)
    assert (slope[1:] <= slope[:-1]).all()  # diminishing returns: poor outputs gain the most
    assert slope[0].item() == pytest.approx(1.0, abs=1e-8) and slope[-1].item() < 1e-8


def test_sum_over_properties_is_log_of_product():
    r = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=D)
    ref = torch.tensor([0.1, 0.2], dtype=D)
    got = combine_rewards(r, ref)
    want = torch.log(torch.sigmoid(r - ref).prod(-1))
    assert torch.allclose(got, want, atol=1e-12)
    assert torch.allclose(combine_rewards(r, ref, weights=(1.0, 0.0)), lsc_transform(r[:, 0], ref[0]))


def _batch(rewards, ref_rewards=None):
    g = torch.Generator().manual_seed(0)
    lp = (-torch.rand(4, 3, generator=g, dtype=D)).requires_grad_()
    ref = -torch.rand(4, 3, generator=g, dtype=D)
    return RewardedBatch(logps=lp, ref_logps=ref, rewards=rewards, ref_rewards=ref_rewards), lp


def test_without_kl_it_is_reinforce_on_the_transformed_reward():
    r = torch.tensor([[0.3, -1.0], [2.0, 0.5], [0.0, 0.0], [-2.0, 1.0]], dtype=D)
    ref = torch.tensor([0.1, 0.2], dtype=D)
    b, lp = _batch(r, ref)
    ours = ak.get("lsc_reward")(b, kl_coef=0.0)
    b2 = RewardedBatch(logps=lp, rewards=combine_rewards(r, ref))
    assert ours.loss.item() == pytest.approx(ak.get("task_reward")(b2).loss.item(), abs=1e-12)
    (g,) = torch.autograd.grad(ours.loss, lp)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_kl_penalises_drift_and_reference_is_required():
    b, _ = _batch(torch.zeros(4, dtype=D))
    out = ak.get("lsc_reward")(b, kl_coef=1.0)
    assert out.metrics["kl"] != 0 and out.metrics["advantage/abs_mean"] > 0
    with pytest.raises(ValueError, match="ref_logps"):
        ak.get("lsc_reward")(RewardedBatch(logps=-torch.rand(2, 2), rewards=torch.ones(2)))
    with pytest.raises(ValueError, match="ref_rewards"):
        RewardedBatch(logps=-torch.rand(2, 2), rewards=torch.ones(2, 3), ref_rewards=torch.ones(2))
