"""ComPO (arXiv:2505.05465): the oracle's sign convention, the direction estimate on a toy quadratic, updates."""

from __future__ import annotations

import math

import pytest
import torch

import alignkit as ak
from alignkit.objectives.preference.compo import comparison_oracle, compo_direction

D = torch.float64


def test_oracle_and_direction_by_hand():
    old = torch.tensor([-1.0, -1.0], dtype=D)
    assert comparison_oracle(old[0], old[1], old[0] + 0.1, old[1] - 0.1).item()
    assert not comparison_oracle(old[0], old[1], old[0] + 0.1, old[1] + 0.1).item()
    z = torch.eye(2, dtype=D)
    g = compo_direction(z, torch.tensor([True, False]))
    assert g.tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)])  # y = -1 for the improving z
    assert compo_direction(z, torch.tensor([True, False]), threshold=0.8).abs().sum() == 0


def _quadratic(a, b):
    def pair_logps(theta):
        return -((theta - a) ** 2).sum(), -((theta - b) ** 2).sum()

    return pair_logps


def test_direction_on_a_toy_quadratic():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(10, generator=g, dtype=D), torch.randn(10, generator=g, dtype=D)
    theta = torch.zeros(10, dtype=D)
    gw, gl = 2 * (a - theta), 2 * (b - theta)  # gradients of the two log-probs
    target = gw / gw.norm() - gl / gl.norm()  # bisector of "chosen up" and "rejected down"
    fn = _quadratic(a, b)
    z = torch.randn(4000, 10, generator=g, dtype=D)
    w0, l0 = fn(theta)
    improved = torch.stack([comparison_oracle(w0, l0, *fn(theta + 1e-4 * zi)) for zi in z])
    step = -compo_direction(z, improved)  # theta moves along -g
    assert torch.nn.functional.cosine_similarity(step, target, dim=0).item() > 0.9


def test_steps_improve_the_pair_and_skip_when_few_improve():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, generator=g, dtype=D), torch.randn(6, generator=g, dtype=D)
    fn = _quadratic(a, b)
    step = ak.get("compo")
    theta = torch.zeros(6, dtype=D)
    w0, l0 = fn(theta)
    for _ in range(5):
        theta, info = step(
            theta, fn, num_perturbations=300, radius=1e-4, step_size=0.05, min_improve=1, generator=g
        )
        assert info["updated"] == 1.0
    w1, l1 = fn(theta)
    assert w1 > w0 and l1 < l0
    same, info = step(theta, fn, num_perturbations=50, min_improve=51, generator=g)
    assert info["updated"] == 0.0 and torch.equal(same, theta)


def test_bad_inputs():
    with pytest.raises(ValueError, match="theta"):
        ak.get("compo")(torch.zeros(2, 2), _quadratic(torch.zeros(2), torch.zeros(2)))
    with pytest.raises(ValueError, match="directions"):
        compo_direction(torch.zeros(3), torch.tensor([True]))
