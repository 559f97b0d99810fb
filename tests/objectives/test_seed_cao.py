"""CAO (arXiv:2502.03512): one objective is DPO; per-objective losses; min-norm gradient balancing."""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import preference_batch, token_inputs

import alignkit as ak
from alignkit.batches_extra import MultiObjectivePreferenceBatch
from alignkit.objectives.preference.cao import min_norm_weights, objective_losses

D = torch.float64
KEYS = (
    "chosen_logps",
    "rejected_logps",
    "ref_chosen_logps",
    "ref_rejected_logps",
    "chosen_mask",
    "rejected_mask",
)


def _multi(ids, seed=0):
    x = token_inputs(b=len(ids), t=5, seed=seed)
    return MultiObjectivePreferenceBatch(**{k: x[k] for k in KEYS}, objective_ids=torch.tensor(ids)), x


def test_one_objective_is_dpo():
    b = preference_batch(token_inputs(b=4, t=6, seed=1))
    assert ak.get("cao")(b, beta=0.3).loss.item() == pytest.approx(
        ak.get("dpo")(b, beta=0.3).loss.item(), abs=1e-12
    )


def test_weighted_sum_of_per_objective_losses():
    b, _ = _multi([0, 1, 1, 2, 0, 2])
    per = objective_losses(b, beta=0.5)
    # brute force: mean DPO loss over each objective's pairs
    dpo = ak.get("dpo")(b, beta=0.5).losses
    ids = torch.tensor([0, 1, 1, 2, 0, 2])
    assert torch.allclose(per, torch.stack([dpo[ids == k].mean() for k in range(3)]), atol=1e-12)
    out = ak.get("cao")(b, beta=0.5)
    assert out.loss.item() == pytest.approx(per.mean().item(), abs=1e-12)  # uniform 1/K
    w = (0.2, 0.5, 0.3)
    out = ak.get("cao")(b, beta=0.5, weights=w, synergy_weight=0.4)
    assert out.loss.item() == pytest.approx(
        (per * torch.tensor(w, dtype=D)).sum().item() + 0.4 * dpo.mean().item()
    )
    assert out.losses.mean().item() == pytest.approx(out.loss.item())


def test_min_norm_weights():
    e = torch.eye(2, dtype=D)
    assert min_norm_weights(e).tolist() == pytest.approx([0.5, 0.5])
    g = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=D)
    assert min_norm_weights(g).tolist() == pytest.approx([0.0, 1.0])  # a zero gradient is Pareto-stationary
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(3, 4, generator=gen, dtype=D)
    w = min_norm_weights(grads, iters=2000)
    best = min(
        ((torch.tensor([a, b, 1 - a - b], dtype=D) @ grads).norm().item())
        for a, b in itertools.product(torch.linspace(0, 1, 201).tolist(), repeat=2)
        if a + b <= 1
    )
    assert (w @ grads).norm().item() <= best + 1e-3
    assert w.sum().item() == pytest.approx(1.0) and (w >= 0).all()
    d = w @ grads
    assert ((grads @ d) >= -1e-6 * d.norm() ** 2).all() or d.norm() < 1e-6  # descent for every objective


def test_balancing_from_real_per_objective_gradients():
    b, x = _multi([0, 0, 1, 1], seed=4)
    per = objective_losses(b)
    gs = torch.stack(
        [
            torch.cat(
                [
                    g.flatten()
                    for g in torch.autograd.grad(
                        per[k], [x["chosen_logps"], x["rejected_logps"]], retain_graph=True
                    )
                ]
            )
            for k in range(2)
        ]
    )
    w = min_norm_weights(gs)
    out = ak.get("cao")(b, weights=tuple(w.tolist()))
    assert torch.isfinite(out.loss) and out.loss.item() == pytest.approx((w * per).sum().item())


def test_bad_inputs():
    b, _ = _multi([0, 1])
    with pytest.raises(ValueError, match="weights"):
        ak.get("cao")(b, weights=(1.0,))
    with pytest.raises(ValueError, match="objective_ids"):
        _multi([0, -1])
    with pytest.raises(ValueError, match="grads"):
        min_norm_weights(torch.ones(3))
