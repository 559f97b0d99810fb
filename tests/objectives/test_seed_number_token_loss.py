"""Number Token Loss (arXiv:2411.02083): hand values for MSE and WAS, the CDF identity, CE when no numbers."""

from __future__ import annotations

import pytest
import torch

import alignkit as ak
from alignkit.batches_extra import NumberTokenBatch
from alignkit.objectives.sft.number_token_loss import number_token_terms

D = torch.float64
DIGITS = torch.arange(10, dtype=D)


def _half_3_half_5() -> torch.Tensor:
    logits = torch.full((1, 1, 10), -1e4, dtype=D)
    logits[0, 0, 3] = logits[0, 0, 5] = 0.0
    return logits


def test_hand_values_mse_and_was():
    # target 4, p(3) = p(5) = 0.5: expected value 4 -> MSE 0; Wasserstein-1 = 0.5*1 + 0.5*1 = 1
    logits = _half_3_half_5()
    lp = torch.tensor([[-0.7]], dtype=D)
    b = NumberTokenBatch(
        lp, number_logits=logits, number_values=DIGITS, target_values=torch.tensor([[4.0]], dtype=D)
    )
    assert ak.get("ntl")(b, kind="mse").metrics["ntl"] == pytest.approx(0.0, abs=1e-12)
    out = ak.get("ntl")(b, kind="was", ntl_weight=0.3)
    assert out.metrics["ntl"] == pytest.approx(1.0, abs=1e-9)
    assert out.loss.item() == pytest.approx(0.7 + 0.3 * 1.0, abs=1e-9)


def test_was_cdf_form_equals_expected_distance():
    g = torch.Generator().manual_seed(0)
    values = torch.tensor([0.0, 0.5, 2.0, 3.0, 7.0], dtype=D)[torch.randperm(5, generator=g)]
    logits = torch.randn(3, 4, 5, generator=g, dtype=D)
    target = values[torch.randint(0, 5, (3, 4), generator=g)]
    terms, at = number_token_terms(logits, values, target, torch.ones(3, 4), "was")
    brute = (torch.softmax(logits, -1) * (values - target.unsqueeze(-1)).abs()).sum(-1)
    assert at.all() and torch.allclose(terms, brute, atol=1e-12)


def test_correct_one_hot_prediction_is_zero_and_non_numbers_ignored():
    logits = torch.full((1, 2, 10), -1e4, dtype=D)
    logits[0, 0, 7] = 0.0
    target = torch.tensor([[7.0, float("nan")]], dtype=D)
    for kind in ("mse", "was"):
        terms, at = number_token_terms(logits, DIGITS, target, torch.ones(1, 2), kind)
        assert at.tolist() == [[True, False]] and terms.abs().max().item() < 1e-9


def test_without_numbers_it_is_cross_entropy_and_gradients_reach_logits():
    lp = -torch.rand(2, 3, dtype=D)
    assert ak.get("ntl")(ak.SFTBatch(lp)).loss.item() == pytest.approx(
        ak.get("sft")(ak.SFTBatch(lp)).loss.item()
    )
    logits = torch.randn(2, 3, 10, dtype=D, requires_grad=True)
    target = torch.tensor([[1.0, float("nan"), 9.0], [float("nan")] * 3], dtype=D)
    b = NumberTokenBatch(lp, number_logits=logits, number_values=DIGITS, target_values=target)
    out = ak.get("ntl")(b)
    out.loss.backward()
    assert out.metrics["ntl/positions"] == 2.0
    assert logits.grad[0, 1].abs().sum() == 0 and logits.grad[1].abs().sum() == 0
    assert logits.grad[0, 0].abs().sum() > 0 and torch.isfinite(logits.grad).all()


def test_bad_inputs_name_the_field():
    lp = -torch.rand(1, 2, dtype=D)
    logits = torch.zeros(1, 2, 10, dtype=D)
    with pytest.raises(ValueError, match="target_values"):
        NumberTokenBatch(
            lp, number_logits=logits, number_values=DIGITS, target_values=torch.tensor([[4.5, 1.0]])
        )
    with pytest.raises(ValueError, match="number_values"):
        NumberTokenBatch(lp, number_logits=logits, number_values=DIGITS[:5], target_values=torch.zeros(1, 2))
    with pytest.raises(ValueError, match="kind"):
        ak.get("ntl")(ak.SFTBatch(lp), kind="huber")
