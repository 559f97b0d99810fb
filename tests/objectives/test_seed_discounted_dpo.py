"""Temporally discounted DPO (arXiv:2402.08265): gamma = 1 is DPO (sum) / LN-DPO (normalised); hand value."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import preference_batch, token_inputs

import alignkit as ak

D = torch.float64


@pytest.mark.parametrize("seed", [0, 1])
def test_gamma_one_unnormalised_is_dpo(seed):
    b = preference_batch(token_inputs(b=4, t=6, seed=seed))
    for beta in (0.1, 1.0):
        ours = ak.get("discounted_dpo")(b, beta=beta, gamma=1.0, normalize=False)
        assert torch.allclose(ours.losses, ak.get("dpo")(b, beta=beta).losses, atol=1e-12)


def test_gamma_one_normalised_is_length_normalised_dpo():
    b = preference_batch(token_inputs(b=4, t=6, seed=3))
    ours = ak.get("discounted_dpo")(b, beta=0.7, gamma=1.0, normalize=True)
    assert torch.allclose(ours.losses, ak.get("sigmoid_norm")(b, beta=0.7).losses, atol=1e-12)


def _steps(win, lose):
    w, lo = torch.tensor([win], dtype=D), torch.tensor([lose], dtype=D)
    z = torch.zeros_like(w) - 9
    return ak.PreferenceBatch(
        chosen_logps=z - 1 + w, rejected_logps=z - 1 + lo, ref_chosen_logps=z - 1, ref_rejected_logps=z - 1
    )


def test_hand_value():
    # log-ratios w = [1, 0], l = [0, 0]; gamma 0.5 -> weights [2/3, 1/3]; l(y_w) = 2/3 -> softplus(-2/3)
    b = _steps([1.0, 0.0], [0.0, 0.0])
    assert ak.get("discounted_dpo")(b, beta=1.0, gamma=0.5).loss.item() == pytest.approx(
        F.softplus(torch.tensor(-2 / 3)).item(), abs=1e-7
    )
    assert ak.get("discounted_dpo")(b, beta=1.0, gamma=0.5).loss.item() == pytest.approx(0.4144, abs=1e-4)


def test_gamma_zero_reads_only_the_first_step_and_clip():
    b = _steps([0.3, 5.0, -2.0], [0.1, -4.0, 1.0])
    out = ak.get("discounted_dpo")(b, beta=2.0, gamma=0.0)
    assert out.loss.item() == pytest.approx(F.softplus(torch.tensor(-2.0 * 0.2, dtype=D)).item(), abs=1e-12)
    clipped = ak.get("discounted_dpo")(b, beta=1.0, gamma=1.0, normalize=False, clip=0.1)
    # clipped steps: w -> [0.1, 0.1, -0.1] (sum 0.1), l -> [0.1, -0.1, 0.1] (sum 0.1): margin 0
    assert clipped.loss.item() == pytest.approx(F.softplus(torch.tensor(0.0, dtype=D)).item(), abs=1e-12)


def test_needs_token_level_reference_and_valid_gamma():
    b = ak.PreferenceBatch.from_sequence_logps(
        torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.0]), torch.tensor([-1.0])
    )
    with pytest.raises(ValueError, match="per-token"):
        ak.get("discounted_dpo")(b)
    with pytest.raises(ValueError, match="gamma"):
        ak.get("discounted_dpo")(preference_batch(token_inputs()), gamma=1.5)
