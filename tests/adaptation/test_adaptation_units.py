"""CAFA, DW-GCS, DASO, CDUL, multi-task transfer: hand values, limiting cases, gradients, parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import alignkit as ak
from alignkit.adaptation import (
    FeatureAlignmentBatch,
    SemiSupervisedBatch,
    TaskAlignment,
    class_gaussian_stats,
    distribution_weights,
    double_weights,
    mahalanobis,
    semantic_probs,
    weighted_mmd2,
)

# --- CAFA -------------------------------------------------------------------------------------------------------


def test_cafa_hand_value_identity_covariance():
    """Means (0,0) and (2,0), identity precision, z = (0.5, 0), predicted class 0: D = (0.25, 2.25),
    loss = log(0.25 / 2.5) = log(0.1)."""
    b = FeatureAlignmentBatch(
        features=torch.tensor([[0.5, 0.0]], dtype=torch.float64),
        logits=torch.tensor([[1.0, 0.0]]),
        class_means=torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64),
        precision=torch.eye(2, dtype=torch.float64),
    )
    assert ak.get("cafa")(b, eps=0.0).loss.item() == pytest.approx(math.log(0.1))


def test_cafa_monotone_along_segment_and_minimal_at_mean():
    means = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    vals = []
    for x in (0.0, 0.2, 0.5, 0.8):
        b = FeatureAlignmentBatch(
            features=torch.tensor([[x, 0.0]], dtype=torch.float64),
            logits=torch.tensor([[1.0, 0.0]]),
            class_means=means,
            precision=torch.eye(2, dtype=torch.float64),
        )
        vals.append(ak.get("cafa")(b).loss.item())
    assert vals == sorted(vals) and vals[0] < -15  # log(eps / 4) at the mean


def test_cafa_gradient_pulls_towards_predicted_mean():
    z = torch.tensor([[0.5, 0.3]], dtype=torch.float64, requires_grad=True)
    b = FeatureAlignmentBatch(
        features=z,
        logits=torch.tensor([[1.0, 0.0]]),
        class_means=torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64),
        precision=torch.eye(2, dtype=torch.float64),
    )
    ak.get("cafa")(b).loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad[0, 0] > 0  # descent moves z towards class 0's mean


def test_class_gaussian_stats_and_mahalanobis_match_numpy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.arange(40) % 2
    mu, prec = class_gaussian_stats(x, y, 2, shrinkage=0.0)
    xn, yn = x.numpy(), y.numpy()
    centred = np.concatenate([xn[yn == c] - xn[yn == c].mean(0) for c in (0, 1)])
    cov = centred.T @ centred / 40
    d = xn[:1] - xn[yn == 1].mean(0)
    assert mahalanobis(x[:1], mu, prec)[0, 1].item() == pytest.approx((d @ np.linalg.inv(cov) @ d.T).item())
    _, per_class = class_gaussian_stats(x, y, 2, shared=False)
    assert per_class.shape == (2, 3, 3)
    with pytest.raises(ValueError, match="no sample of class"):
        class_gaussian_stats(x, y, 3)


def test_cafa_bad_input():
    with pytest.raises(ValueError, match="class_means"):
        FeatureAlignmentBatch(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(3, 3), torch.eye(3))


# --- DW-GCS -----------------------------------------------------------------------------------------------------


def test_identical_samples_give_zero_objective_and_unit_test_weights():
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    beta, alpha = double_weights(x, x.clone(), D=4.0, sigma=1.0)
    assert weighted_mmd2(x, x, beta, alpha, 1.0) == pytest.approx(0.0, abs=1e-8)
    beta1, alpha1 = double_weights(x, x.clone(), D=1.0, sigma=1.0)
    assert torch.equal(alpha1, torch.ones(8, dtype=torch.float64))  # D = 1: KMM, alpha fixed


def test_constraints_hold_and_shifted_training_points_are_downweighted():
    g = torch.Generator().manual_seed(2)
    tr = torch.cat([torch.randn(20, 1, generator=g) - 1, torch.randn(20, 1, generator=g) + 1]).double()
    te = (torch.randn(30, 1, generator=g) + 1).double()
    D, B = 4.0, 1000.0
    beta, alpha = double_weights(tr, te, D=D, B=B, sigma=1.0)
    n, t = 40, 30
    assert (beta >= -1e-9).all() and (beta <= B / math.sqrt(D) + 1e-9).all()
    assert (alpha >= -1e-9).all() and (alpha <= 1 + 1e-9).all()
    assert abs(beta.sum() / n - alpha.sum() / t) <= 1 - 1 / math.sqrt(n) + 1e-6
    assert (alpha - 1).norm() <= (1 - 1 / math.sqrt(D)) * math.sqrt(t) + 1e-6
    assert beta[20:].mean() > 3 * beta[:20].mean()  # training points near the test mass count more


def _mrcpy_dwkmm(xtr, xte, D, B, sigma):
    """MRCpy's ``DWGCS.DWKMM`` problem (MRCpy 3.0.0, the authors' library), restated with cvxpy: MRCpy's own call
    fails its PSD certification of the RBF kernel (ARPACK) on these inputs, so the kernel is wrapped with
    ``psd_wrap``; objective and constraints are copied from its source."""
    import cvxpy as cvx
    from sklearn.metrics.pairwise import rbf_kernel

    n, t = xtr.shape[0], xte.shape[0]
    K = rbf_kernel(np.concatenate([xtr, xte]), gamma=1 / (2 * sigma**2))
    eps = 1 - 1 / np.sqrt(n)
    beta = cvx.Variable((n, 1))
    if D == 1:
        alpha = np.ones((t, 1))
        cons = [
            beta >= 0,
            beta <= B / np.sqrt(D),
            cvx.sum(beta) / n - 1 <= eps,
            -eps <= cvx.sum(beta) / n - 1,
        ]
    else:
        alpha = cvx.Variable((t, 1))
        cons = [
            beta >= 0,
            beta <= B / np.sqrt(D),
            alpha >= 0,
            alpha <= 1,
            cvx.sum(beta) / n - cvx.sum(alpha) / t <= eps,
            -eps <= cvx.sum(beta) / n - cvx.sum(alpha) / t,
            cvx.norm(alpha - np.ones((t, 1))) <= (1 - 1 / np.sqrt(D)) * np.sqrt(t),
        ]
    prob = cvx.Problem(cvx.Minimize(cvx.quad_form(cvx.vstack([beta / n, -alpha / t]), cvx.psd_wrap(K))), cons)
    prob.solve()
    return prob.value


def test_dwkmm_objective_matches_the_authors_problem():
    g = np.random.default_rng(0)
    xtr = np.concatenate([g.normal(-1, 1, (8, 2)), g.normal(1, 1, (8, 2))])
    xte = g.normal(1, 1, (10, 2))
    assert ak.get("dwgcs_weights") is double_weights  # the registered procedure is this function
    for D in (1, 4):
        beta, alpha = double_weights(torch.from_numpy(xtr), torch.from_numpy(xte), D=D, B=1000, sigma=1.0)
        ours = weighted_mmd2(torch.from_numpy(xtr), torch.from_numpy(xte), beta, alpha, 1.0)
        assert ours == pytest.approx(_mrcpy_dwkmm(xtr, xte, D, 1000, 1.0), abs=1e-5)


# --- DASO -------------------------------------------------------------------------------------------------------


def test_daso_distribution_weights_hand_values():
    """m = (0.6, 0.3, 0.1), T = 1: v = m / max = (1, 0.5, 1/6); balanced counts give v = 1."""
    v = distribution_weights(torch.tensor([0.6, 0.3, 0.1]), 1.0)
    assert torch.allclose(v, torch.tensor([1.0, 0.5, 1 / 6]))
    assert torch.equal(distribution_weights(torch.ones(4), 1.5), torch.ones(4))


def test_daso_blend_is_a_distribution_and_head_leans_semantic():
    p_lin = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]])
    p_sem = torch.tensor([[0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    out = ak.get("daso_pseudo_labels")(p_lin, p_sem, torch.tensor([0.6, 0.3, 0.1]), dist_temperature=1.0)
    assert torch.allclose(out.sum(-1), torch.ones(2))
    assert torch.allclose(out[0], p_sem[0])  # head class (v = 1): purely semantic
    assert torch.allclose(out[1], (5 / 6) * p_lin[1] + (1 / 6) * p_sem[1])


def test_daso_alignment_minimal_when_views_agree_and_gradients_flow():
    g = torch.Generator().manual_seed(3)
    protos = torch.randn(3, 5, generator=g)
    fw = torch.randn(6, 5, generator=g)
    ls = torch.randn(6, 3, generator=g, requires_grad=True)
    fs = fw.clone().requires_grad_(True)
    b = SemiSupervisedBatch(ls.detach() * 10, ls, fw, fs, protos, torch.tensor([0.5, 0.3, 0.2]))
    out = ak.get("daso")(b)
    out.loss.backward()
    assert torch.isfinite(ls.grad).all() and torch.isfinite(fs.grad).all() and fs.grad.abs().sum() > 0
    p = semantic_probs(fw, protos)
    entropy = -(p * p.log()).sum(-1).mean()
    assert out.metrics["loss_align"] == pytest.approx(entropy.item(), rel=1e-5)  # H(p, p) = H(p): the minimum
    shifted = SemiSupervisedBatch(
        ls.detach() * 10, ls, fw, fs.detach() + 1.0, protos, torch.tensor([0.5, 0.3, 0.2])
    )
    assert ak.get("daso")(shifted).metrics["loss_align"] > out.metrics["loss_align"]


# --- CDUL -------------------------------------------------------------------------------------------------------


def test_cdul_aggregation_hand_values_and_global_limit():
    g = torch.tensor([[0.6, 0.4]])
    loc = torch.tensor(
        [[[0.7, 0.3], [0.2, 0.45]]]
    )  # class 0: max 0.7 >= 0.5 -> 0.7; class 1: max 0.45 -> min 0.3
    out = ak.get("cdul_pseudo_labels")(g, loc)
    assert torch.allclose(out, torch.tensor([[0.65, 0.35]]))
    same = ak.get("cdul_pseudo_labels")(g, g.unsqueeze(1).repeat(1, 3, 1))
    assert torch.allclose(same, g)  # every crop equal to the global view: aggregation = global


def test_cdul_label_update_stays_in_unit_interval_and_is_fixed_at_zero_logit():
    y = torch.tensor([[0.0, 0.5, 1.0]])
    assert torch.equal(ak.get("cdul_label_update")(y, torch.zeros(1, 3)), y)
    up = ak.get("cdul_label_update")(y, torch.tensor([[30.0, 3.0, -30.0]]), label_lr=1.0)
    assert ((up >= 0) & (up <= 1)).all() and up[0, 1] > 0.5 and up[0, 0] > 0


# --- multi-task transfer ----------------------------------------------------------------------------------------


def test_task_covariance_similarity_limits():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(30, 4, generator=g)
    sim = ak.get("task_covariance_similarity")
    assert sim(x, x) == pytest.approx(1.0) and sim(x, 7.0 * x) == pytest.approx(1.0)
    a = torch.zeros(10, 4)
    a[:, :2] = torch.randn(10, 2, generator=g)
    b = torch.zeros(10, 4)
    b[:, 2:] = torch.randn(10, 2, generator=g)
    assert sim(a, b) == pytest.approx(0.0, abs=1e-7)


def test_task_alignment_identity_and_svd_weights():
    m = TaskAlignment(3, 2)
    x = torch.randn(4, 3)
    assert torch.equal(m(x, 1), x)
    theta = torch.tensor([[1.0, 0.0], [0.9, 0.1], [1.1, -0.1], [0.0, 1.0]])  # task 3 is the outlier
    w = ak.get("svd_task_weights")(theta, rank=1)
    assert w.sum().item() == pytest.approx(4.0) and w.argmin().item() == 3
