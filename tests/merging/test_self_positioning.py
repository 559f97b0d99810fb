"""Self Positioning: the coefficient gradient is <grad_theta L, tau_k>, and a one-task probe pulls a -> 1."""

from __future__ import annotations

import torch

import alignkit as ak
from alignkit.merging import self_positioning
from tests.claims_io import record_claims

D = torch.float64


def setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2, bias=False).to(D)
    base = {"weight": torch.zeros(2, 3, dtype=D)}
    targets = [torch.randn(2, 3, dtype=D) for _ in range(2)]
    models = [{"weight": t} for t in targets]
    g = torch.Generator().manual_seed(seed)
    probe = [torch.randn(8, 3, generator=g, dtype=D) for _ in range(4)]
    return model, base, models, targets, probe


def test_coefficient_gradient_is_the_inner_product_with_the_task_vector():
    model, base, models, targets, probe = setup()
    x = probe[0]

    def loss_fn(forward, batch):
        return ((forward(batch) - batch @ targets[0].T) ** 2).mean()

    # one SGD step from a = [0.5, 0.5] with lr 0.1: a' = a - 0.1 * <grad_theta L(theta(a)), tau_k>
    theta = (0.5 * targets[0] + 0.5 * targets[1]).requires_grad_(True)
    ((x @ theta.T - x @ targets[0].T) ** 2).mean().backward()
    expected = torch.tensor([0.5, 0.5], dtype=D) - 0.1 * torch.stack(
        [(theta.grad * t).sum() for t in targets]
    )
    merged, a = self_positioning(model, base, models, [x], loss_fn, steps=1, lr=0.1, optimizer="sgd")
    assert torch.allclose(a.double(), expected, atol=1e-6)
    # the returned state dict is theta_0 + sum_k a_k tau_k
    assert torch.allclose(
        merged["weight"], a[0].double() * targets[0] + a[1].double() * targets[1], atol=1e-6
    )


def test_one_task_probe_pulls_its_coefficient_to_one():
    model, base, models, targets, probe = setup(1)

    def loss_fn(forward, batch):
        return ((forward(batch) - batch @ targets[0].T) ** 2).mean()

    _, a = self_positioning(model, base, models[:1], probe, loss_fn, steps=300, lr=0.05)
    assert abs(a.item() - 1.0) < 1e-2
    # with both task vectors available, the probe of task 0 selects a ~ [1, 0]
    _, a2 = self_positioning(model, base, models, probe, loss_fn, steps=400, lr=0.05)
    record_claims(
        "merging_self_positioning", {"one_task": a.item(), "two_tasks": a2.tolist()}, tolerance=1e-3
    )
    assert torch.allclose(a2.double(), torch.tensor([1.0, 0.0], dtype=D), atol=5e-2)
    assert ak.get("self_positioning").arxiv == "2410.15035"
