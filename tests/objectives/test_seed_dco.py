"""DCO (arXiv:2502.07154): N = 1 is cross-entropy; hand values; the confidence factor; stability."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import token_inputs

import alignkit as ak
from alignkit.objectives.sft.dco import confidence_factor

D = torch.float64


def test_n1_equals_cross_entropy():
    x = token_inputs(b=4, t=6, seed=5)
    b = ak.SFTBatch(x["chosen_logps"], x["chosen_mask"])
    out = ak.get("dco")(b, n=1)
    seq = (x["chosen_logps"] * x["chosen_mask"]).sum(-1)
    assert torch.allclose(out.losses, -seq, atol=1e-10)


def test_hand_value_p_half_n2():
    b = ak.SFTBatch(torch.tensor([[math.log(0.5)]], dtype=D))
    assert ak.get("dco")(b, n=2).loss.item() == pytest.approx(-math.log(0.75), abs=1e-12)


def test_gradient_is_ce_gradient_times_confidence_factor():
    lp = torch.tensor([[math.log(0.9)], [math.log(0.2)]], dtype=D, requires_grad=True)
    out = ak.get("dco")(ak.SFTBatch(lp), n=4)
    (g,) = torch.autograd.grad(out.losses.sum(), lp)
    p = torch.tensor([0.9, 0.2], dtype=D)
    factor = 4 * p * (1 - p) ** 3 / (1 - (1 - p) ** 4)
    assert torch.allclose(-g.flatten(), factor, atol=1e-10)
    assert factor[0].item() == pytest.approx(4 * 0.9 * 0.001 / (1 - 1e-4), rel=1e-9)
    assert torch.allclose(confidence_factor(lp.detach().flatten(), 4), factor, atol=1e-10)
    # confidence limiting: the push on an already-likely example is far weaker than CE's (factor 1)
    assert factor[0] < 0.01 < factor[1]


def test_stable_for_very_unlikely_sequences():
    lp = torch.tensor([[-200.0]], dtype=D, requires_grad=True)
    out = ak.get("dco")(ak.SFTBatch(lp), n=8)
    assert out.loss.item() == pytest.approx(200.0 - math.log(8), rel=1e-9)
    out.loss.backward()
    assert torch.isfinite(lp.grad).all() and lp.grad.item() == pytest.approx(-1.0, abs=1e-6)


def test_bad_n():
    with pytest.raises(ValueError, match="n must be a positive integer"):
        ak.get("dco")(ak.SFTBatch(-torch.rand(2, 3)), n=0)
