"""Early neuron alignment (arXiv:2307.12851): hand values, and the paper's simulation against its theory."""

import numpy as np
import pytest
import torch

from alignkit.diagnostics.neuron_alignment import (
    neuron_alignment,
    orthogonally_separable_data,
    predicted_fit_time,
    simulate_two_layer,
)
from tests.claims_io import record_claims


def test_hand_values():
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([1.0, 1.0, -1.0])  # x_plus = (1, 1), x_minus = (-1, 0)
    W = torch.tensor([[1.0, 1.0], [2.0, 0.0], [-1.0, 0.0], [0.0, -1.0]])
    v = torch.tensor([1.0, 1.0, -1.0, 1.0])
    r = neuron_alignment(W, v, X, y)
    assert r["cos"].tolist() == pytest.approx([1.0, 2**-0.5, 1.0, -(2**-0.5)])
    assert r["active"].tolist() == [True, True, True, False]  # the last neuron sees no point
    assert r["alignment"] == pytest.approx((2 + 2**-0.5) / 3)
    assert neuron_alignment(torch.tensor([[1.0, 0.0], [2.0, 0.0]]), torch.ones(2), X, y)["stable_rank"] == (
        pytest.approx(1.0)
    )  # rank-one W
    with pytest.raises(ValueError, match="labels"):
        neuron_alignment(W, v, X, torch.tensor([1.0, 0.0, -1.0]))


def test_data_is_orthogonally_separable():
    X, y = orthogonally_separable_data(seed=3)
    G = X @ X.T
    same = y[:, None] == y[None]
    assert bool((G[same] > 0).all()) and bool((G[~same] <= 0).all())


@pytest.mark.slow
def test_alignment_precedes_fitting_and_fit_time_follows_theory():
    """Neurons align (mean cos > 0.95) while the loss is still within 1% of its start, at a step that does not
    depend on the init scale; the loss halves when the aligned norms reach O(1): at log(1/eps) / (lr r) steps,
    r = ||x_plus|| / (2n). Measured for eps = 1e-3 and 1e-6."""
    X, y = orthogonally_separable_data()
    align_steps, half_steps, predicted = [], [], []
    for eps in (1e-3, 1e-6):
        pred = predicted_fit_time(X, y, eps, 0.2)
        r = simulate_two_layer(X, y, init_scale=eps, lr=0.2, steps=int(1.5 * pred), record_every=5)
        loss, align, steps = np.array(r["loss"]), np.array(r["alignment"]), np.array(r["steps"])
        i_align = int(np.argmax(align > 0.95))
        i_half = int(np.argmax(loss < 0.5 * loss[0]))
        assert align[i_align] > 0.95 and loss[i_align] > 0.99 * loss[0]
        assert steps[i_half] == pytest.approx(pred, rel=0.15), (eps, steps[i_half], pred)
        assert neuron_alignment(r["W"], r["v"], X, y)["stable_rank"] < 1.5  # low-rank W at the end
        align_steps.append(steps[i_align])
        half_steps.append(steps[i_half])
        predicted.append(pred)
    record_claims(
        "diag_neuron_alignment",
        {
            "align_step": [int(a) for a in align_steps],
            "half_step": [int(h) for h in half_steps],
            "predicted": predicted,
        },
    )
    assert abs(align_steps[0] - align_steps[1]) <= 10
