"""Layer-wise tangent-kernel alignment (arXiv:2110.11749): kernel-alignment hand values, the per-layer kernel
against an explicit Jacobian, and alignment growing with training."""

import pytest
import torch
from torch import nn

from alignkit.diagnostics.signal_propagation import kernel_alignment, layer_alignment
from tests.claims_io import record_claims

Y4 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])


def test_kernel_alignment_hand_values():
    assert kernel_alignment(Y4 @ Y4.T, Y4) == pytest.approx(1.0)
    assert kernel_alignment(7.0 * Y4 @ Y4.T + 0.0, Y4) == pytest.approx(1.0)  # scale invariant
    # K = I, balanced two classes, n = 4, centred: ||HY||^2 / (sqrt(n-1) ||HYY^TH||) = 2 / (sqrt(3) * 2)
    assert kernel_alignment(torch.eye(4), Y4) == pytest.approx(3**-0.5)
    # centring removes a constant offset of the kernel
    assert kernel_alignment(Y4 @ Y4.T + 5.0, Y4) == pytest.approx(1.0)
    assert kernel_alignment(Y4 @ Y4.T + 5.0, Y4, centered=False) < 0.9
    with pytest.raises(ValueError, match="K must be"):
        kernel_alignment(torch.eye(3), Y4)


def test_layer_kernel_matches_explicit_jacobian():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    x = torch.randn(6, 3)
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1, 1, 0]), 2).float()
    got = layer_alignment(net, x, y)
    assert list(got) == ["0", "2"]
    # explicit: rows of J for layer "2" = d f_k(x_i) / d (W2, b2)
    rows = []
    for i in range(6):
        for k in range(2):
            net.zero_grad()
            net(x[i : i + 1])[0, k].backward()
            rows.append(torch.cat([net[2].weight.grad.reshape(-1), net[2].bias.grad]))
    J = torch.stack(rows).reshape(6, 2, -1)
    K = torch.einsum("akp,bkp->ab", J, J)
    assert got["2"] == pytest.approx(kernel_alignment(K, y), rel=1e-6)
    assert layer_alignment.arxiv == "2110.11749" and "tangent_kernel_alignment" in layer_alignment.aliases


def _alignment_before_after(seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Layer-wise alignment of a two-class MLP before and after 200 full-batch SGD steps; the data is fixed, the
    training seed sets the initial weights."""
    g = torch.Generator().manual_seed(0)
    n = 64
    y_idx = torch.arange(n) % 2
    x = torch.randn(n, 8, generator=g) + 1.5 * (2 * y_idx[:, None].float() - 1) * torch.eye(8)[0]
    y = torch.nn.functional.one_hot(y_idx, 2).float()
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    before = layer_alignment(net, x, y)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(200):
        loss = nn.functional.cross_entropy(net(x), y_idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, layer_alignment(net, x, y)


def test_training_raises_alignment():
    """Training seeds 0, 1, 2 (the initial weights): per layer, the mean alignment before and after and the rise
    after - before paired by seed, with its 95% Student-t interval across seeds."""
    from tests.effect import TRAINING_SEEDS, paired_by_seed

    runs = [_alignment_before_after(seed) for seed in TRAINING_SEEDS]
    layers = sorted(runs[0][0])
    rise = {k: paired_by_seed([a[k] for _, a in runs], [b[k] for b, _ in runs]) for k in layers}
    record_claims(
        "diag_layer_alignment",
        {
            "layers": layers,
            "before": [sum(b[k] for b, _ in runs) / len(runs) for k in layers],
            "after": [sum(a[k] for _, a in runs) / len(runs) for k in layers],
            "rise": [rise[k]["mean"] for k in layers],
            **{f"rise_ci_{k}": rise[k]["ci95"] for k in layers},
            **{f"rise_seeds_{k}": rise[k]["values"] for k in layers},
        },
        tolerance=1e-4,
    )
    # measured: alignment rises in every layer on every seed, most in the later layers
    assert all(a[k] > b[k] for b, a in runs for k in layers), runs
    assert all(rise[k]["ci95"][0] > 0 for k in layers[1:]), rise
    assert rise[layers[-1]]["mean"] > rise[layers[0]]["mean"], rise


def test_signal_propagation_hook_adds_layer_keys():
    from types import SimpleNamespace

    from alignkit.diagnostics.hooks import SignalPropagationHook

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(6, 3)
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1, 1, 0]), 2).float()
    hook = SignalPropagationHook(x, y, every=2)
    rec = {}
    hook.on_step_end(SimpleNamespace(model=net, step=1, total_steps=4), rec)
    assert rec == {}  # not due
    hook.on_step_end(SimpleNamespace(model=net, step=2, total_steps=4), rec)
    assert rec == pytest.approx({f"signal/{k}": v for k, v in layer_alignment(net, x, y).items()})
