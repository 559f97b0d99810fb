"""Hessian top eigenvalue (arXiv:2110.04369) and Hessian trace (arXiv:2210.14199) on quadratics with a known
Hessian, a linear least-squares model with a closed-form Hessian, and a tiny MLP checked against torch's Hessian."""

import pytest
import torch

import alignkit as ak
from alignkit.diagnostics.flatness import hessian_trace
from alignkit.diagnostics.hessian import hessian_top_eigenvalue, lanczos, power_iteration
from tests.claims_io import record_claims


def _quadratic(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T
    w = torch.randn(len(eigs), dtype=torch.float64, requires_grad=True)
    return A, w, (lambda: 0.5 * w @ A @ w)


def test_registered():
    assert ak.get("sharpness") is ak.get("hessian_top_eigenvalue")
    assert ak.get("flatness").arxiv == "2210.14199"


@pytest.mark.parametrize("method", ["power", "lanczos"])
def test_top_eigenvalue_of_known_quadratic(method):
    eigs = [5.0, 3.0, 1.0, 0.5, -0.2, 0.1]
    A, w, f = _quadratic(eigs)
    r = hessian_top_eigenvalue(f, [w], method=method, iters=200 if method == "power" else 6)
    assert r["lambda_max"] == pytest.approx(5.0, abs=1e-4)
    if method == "lanczos":  # Lanczos on the full space gives the exact spectrum ends
        assert r["lambda_min"] == pytest.approx(-0.2, abs=1e-8)
        assert r["hvp_calls"] <= 6


def test_lanczos_needs_fewer_products_than_power_on_a_close_gap():
    eigs = [1.0 + 0.01 * i for i in range(60)]  # clustered top: power iteration converges slowly
    A, w, f = _quadratic(eigs, seed=1)
    lam_l = hessian_top_eigenvalue(f, [w], method="lanczos", iters=25)["lambda_max"]
    lam_p = hessian_top_eigenvalue(f, [w], method="power", iters=25)["lambda_max"]
    assert abs(lam_l - 1.59) < 1e-4 and abs(lam_p - 1.59) > abs(lam_l - 1.59)


def test_gd_on_quadratic_diverges_iff_eta_lambda_above_two():
    eigs = [4.0, 1.0, 0.3]
    A, w0, _ = _quadratic(eigs, seed=2)
    figures = {}
    for eta, expect in ((0.45, False), (0.55, True)):  # eta * 4 = 1.8 / 2.2
        w = w0.detach().clone().requires_grad_(True)
        r = hessian_top_eigenvalue(lambda w=w: 0.5 * w @ A @ w, [w], learning_rate=eta, iters=3)
        assert r["unstable"] is expect and r["eta_lambda"] == pytest.approx(4 * eta, rel=1e-6)
        x = w0.detach().clone()
        for _ in range(200):
            x = x - eta * (A @ x)
        assert bool(x.norm() > 1e3) is expect
        tag = "stable" if not expect else "unstable"
        figures |= {
            f"{tag}_eta_lambda": r["eta_lambda"],
            f"{tag}_diverged": str(bool(x.norm() > 1e3)).lower(),
        }
    record_claims("diag_curvature_gd", figures, tolerance=1e-4)


def test_preconditioned_eigenvalue():
    # H = diag(4, 1), P = diag(2, 0.5): P^-1 H = diag(2, 2) -> 2
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    H = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    r = hessian_top_eigenvalue(
        lambda: 0.5 * w @ H @ w, [w], preconditioner=[torch.tensor([2.0, 0.5], dtype=torch.float64)], iters=2
    )
    assert r["lambda_max"] == pytest.approx(2.0, abs=1e-10)


def test_tiny_mlp_matches_torch_hessian():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    w1 = torch.randn(3, 4, requires_grad=True)
    w2 = torch.randn(4, 1, requires_grad=True)

    def loss_of(a, b):
        return ((torch.tanh(x @ a) @ b - y) ** 2).mean()

    H = torch.autograd.functional.hessian(
        lambda flat: loss_of(flat[:12].view(3, 4), flat[12:].view(4, 1)),
        torch.cat([w1.detach().reshape(-1), w2.detach().reshape(-1)]),
    )
    ev = torch.linalg.eigvalsh(H.double())
    r = hessian_top_eigenvalue(lambda: loss_of(w1, w2), [w1, w2], iters=16)
    record_claims(
        "diag_curvature_mlp", {"lanczos": r["lambda_max"], "autograd": float(ev[-1])}, tolerance=1e-4
    )
    assert r["lambda_max"] == pytest.approx(float(ev[-1]), rel=1e-4)
    t = hessian_trace(lambda: loss_of(w1, w2), [w1, w2], n_samples=300)
    assert t["trace"] == pytest.approx(float(torch.trace(H)), abs=4 * t["trace_stderr"])
    assert w1.grad is None  # the diagnostics leave .grad alone


def test_trace_exact_for_diagonal_and_linear_regression_closed_form():
    d = torch.tensor([3.0, 1.0, 0.5, 2.0], dtype=torch.float64)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    r = hessian_trace(lambda: 0.5 * (d * w * w).sum(), [w], n_samples=1)
    assert r["trace"] == pytest.approx(6.5, abs=1e-12)  # Rademacher: v^T D v = Tr D exactly
    # linear model + MSE: H = 2 X^T X / n, Tr = 2 ||X||_F^2 / n
    g = torch.Generator().manual_seed(0)
    X, y = (
        torch.randn(30, 5, generator=g, dtype=torch.float64),
        torch.randn(30, generator=g, dtype=torch.float64),
    )
    b = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    r = hessian_trace(lambda: ((X @ b - y) ** 2).mean(), [b], n_samples=400, lanczos_steps=5)
    exact = float(2 * (X**2).sum() / 30)
    assert r["trace"] == pytest.approx(exact, abs=4 * r["trace_stderr"]) and r["trace_stderr"] < 0.05 * exact
    assert r["lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(2 * X.T @ X / 30)[-1]), rel=1e-8)


def test_operators_and_errors():
    lam, v = power_iteration(lambda v: torch.tensor([2.0, 1.0], dtype=torch.float64) * v, 2, iters=200)
    assert lam == pytest.approx(2.0, abs=1e-5) and abs(float(v[0])) == pytest.approx(1.0, abs=1e-2)
    assert lanczos(lambda v: 3 * v, 5, steps=5)[-1] == pytest.approx(3.0)
    w = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="scalar"):
        hessian_top_eigenvalue(lambda: w * 2, [w])
    with pytest.raises(ValueError, match="method"):
        hessian_top_eigenvalue(lambda: (w**2).sum(), [w], method="arnoldi")
    with pytest.raises(ValueError, match="requires_grad"):
        hessian_trace(lambda: (w**2).sum(), [torch.zeros(3)])
