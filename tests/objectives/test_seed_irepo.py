"""iREPO (arXiv:2405.15230): hand value, hard labels = IPO-style regression, calibration at the optimum."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import grads, preference_batch, token_inputs

import alignkit as ak
from alignkit.batches_extra import SoftPreferenceBatch

D = torch.float64


def _pair(p=None, grad=True):
    t = lambda v: torch.tensor([v], dtype=D, requires_grad=grad)  # noqa: E731
    base = dict(chosen_logps=t(-1.0), rejected_logps=t(-2.0))
    ref = dict(
        ref_chosen_logps=torch.tensor([-1.5], dtype=D), ref_rejected_logps=torch.tensor([-1.5], dtype=D)
    )
    b = ak.PreferenceBatch.from_sequence_logps(
        base["chosen_logps"],
        base["rejected_logps"],
        ref["ref_chosen_logps"],
        ref["ref_rejected_logps"],
        torch.ones(1, dtype=D),
        torch.ones(1, dtype=D),
    )
    if p is not None:
        b.preference_probs = torch.tensor([p], dtype=D)
    return b


def test_hand_value_soft_label():
    # h = 0.5 - (-0.5) = 1; p = 0.75 -> target log 3
    out = ak.get("irepo")(_pair(0.75), beta=0.1)
    assert out.loss.item() == pytest.approx((0.1 - math.log(3)) ** 2, abs=1e-12)


def test_hard_labels_are_ipo_style_regression():
    beta, eps = 0.2, 1e-3
    target = math.log((1 - eps) / eps)
    tau = beta / (2 * target)  # IPO's target 1/(2 tau) = target / beta; lengths 1 so IPO's mean = sum
    hard = ak.get("irepo")(_pair(), beta=beta, eps=eps).loss.item()
    ipo = ak.get("ipo")(_pair(), beta=tau).loss.item()
    assert hard == pytest.approx(beta**2 * ipo, rel=1e-12)


def test_optimum_is_calibrated():
    # minimise over the log-ratio gap h: sigma(beta * h*) must equal p^
    for p in (0.5, 0.8, 0.3):
        h = torch.zeros(1, dtype=D, requires_grad=True)
        opt = torch.optim.LBFGS([h], max_iter=50)

        def closure(p=p, h=h, opt=opt):
            opt.zero_grad()
            b = ak.PreferenceBatch.from_sequence_logps(
                (-1.0 + h).clamp(max=0),
                torch.tensor([-1.0], dtype=D),
                torch.tensor([-1.0], dtype=D),
                torch.tensor([-1.0], dtype=D),
            )
            b.preference_probs = torch.tensor([p], dtype=D)
            loss = ak.get("irepo")(b, beta=0.5).loss
            loss.backward()
            return loss

        opt.step(closure)
        assert torch.sigmoid(0.5 * h).item() == pytest.approx(p, abs=1e-6)


def test_soft_batch_validation_and_gradients():
    x = token_inputs(b=3, t=4, seed=6)
    x["ref_chosen_logps"].requires_grad_()
    b = SoftPreferenceBatch(
        **{
            k: x[k]
            for k in (
                "chosen_logps",
                "rejected_logps",
                "ref_chosen_logps",
                "ref_rejected_logps",
                "chosen_mask",
                "rejected_mask",
            )
        },
        preference_probs=torch.tensor([0.6, 0.9, 0.5], dtype=D),
    )
    out = ak.get("irepo")(b)
    gc, gr, gref = grads(out.loss, x["chosen_logps"], x["rejected_logps"], x["ref_chosen_logps"])
    assert gc.abs().sum() > 0 and gr.abs().sum() > 0 and gref is None
    with pytest.raises(ValueError, match="preference_probs"):
        SoftPreferenceBatch(
            chosen_logps=x["chosen_logps"],
            rejected_logps=x["rejected_logps"],
            preference_probs=torch.tensor([0.6, 1.5, 0.5]),
        )
    with pytest.raises(ValueError, match="eps"):
        ak.get("irepo")(preference_batch(x), eps=0.0)
