"""Gradient entanglement (arXiv:2410.13828): the first-order prediction matches a real SGD step on a log-linear
policy, including the case where a margin loss lowers both likelihoods."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import alignkit as ak
from alignkit.diagnostics.gradient_entanglement import log_prob_gradients
from tests.claims_io import record_claims

D = torch.float64
diag = ak.get("gradient_entanglement")


def _policy(phi_w, phi_l, others):
    """Log-linear policy over a finite set of outputs: log pi(y) = theta . phi(y) - logsumexp."""
    feats = torch.stack([phi_w, phi_l, *others])

    def logps(theta):
        lp = torch.log_softmax(feats @ theta, 0)
        return lp[0], lp[1]

    return logps


def _step(theta, logps, eta, beta=1.0):
    theta = theta.clone().requires_grad_()
    lw, ll = logps(theta)
    loss = -F.logsigmoid(beta * (lw - ll))
    (g,) = torch.autograd.grad(loss, theta)
    return theta.detach() - eta * g, torch.sigmoid(-beta * (lw - ll)).item() * beta


def test_hand_values():
    out = diag(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]))
    assert out["inner"].item() == 2.0 and out["delta_chosen"].item() == 1 - 2
    # ||g_w||^2 = 1 < <g_w, g_l> = 2 < ||g_l||^2 = 5: both log-probs fall (d_w = 1 - 2, d_l = 2 - 5)
    assert out["chosen_falls"].item() and out["both_fall"].item() and out["delta_rejected"].item() == -3
    orth = diag(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert not orth["chosen_falls"].item() and not orth["rejected_rises"].item()


@pytest.mark.parametrize("entangled", [True, False])
def test_prediction_matches_a_real_step(entangled):
    g = torch.Generator().manual_seed(0)
    d = 5
    phi_w = torch.randn(d, generator=g, dtype=D)
    others = [torch.randn(d, generator=g, dtype=D) for _ in range(4)]
    theta = torch.randn(d, generator=g, dtype=D) * 0.1
    logps = _policy(phi_w, phi_w, others)
    gw, _ = (
        log_prob_gradients(lambda: logps(theta.clone().requires_grad_()), [theta.clone().requires_grad_()])
        if False
        else (None, None)
    )
    th = theta.clone().requires_grad_()
    gw = torch.autograd.grad(logps(th)[0], th)[0]
    # rejected features = chosen + a bit more along g_w: <g_w, g_l> lies between ||g_w||^2 and ||g_l||^2
    # (both fall); or orthogonal-ish features (no entanglement)
    phi_l = phi_w + 0.3 * gw / gw.norm() if entangled else torch.randn(d, generator=g, dtype=D)
    logps = _policy(phi_w, phi_l, others)
    th = theta.clone().requires_grad_()
    gw, gl = log_prob_gradients(lambda: logps(th), [th])
    eta = 1e-5
    new, a = _step(theta, logps, eta)
    out = diag(gw, gl, chosen_weight=a, rejected_weight=a)
    w0, l0 = logps(theta)
    w1, l1 = logps(new)
    assert (w1 - w0).item() == pytest.approx(eta * out["delta_chosen"].item(), rel=1e-3)
    assert (l1 - l0).item() == pytest.approx(eta * out["delta_rejected"].item(), rel=1e-3)
    if entangled:
        record_claims(
            "diag_gradient_entanglement",
            {
                "real_d_chosen": (w1 - w0).item() / eta,
                "pred_d_chosen": out["delta_chosen"].item(),
                "real_d_rejected": (l1 - l0).item() / eta,
                "pred_d_rejected": out["delta_rejected"].item(),
                "cosine": out["cosine"].item(),
                "both_fall": str(bool(out["both_fall"].item())).lower(),
            },
            tolerance=1e-6,
        )
        assert out["both_fall"].item() and w1 < w0 and l1 < l0
        assert out["cosine"].item() > 0.9


def test_bad_inputs():
    with pytest.raises(ValueError, match="grad_rejected"):
        diag(torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match="chosen_weight"):
        diag(torch.ones(3), torch.ones(3), chosen_weight=0.0)
