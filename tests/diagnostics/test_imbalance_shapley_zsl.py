"""Class imbalance by frequency group (arXiv:2402.19449), Shapley attribution of a performance change to shifts
(arXiv:2210.10769), and zero-sum learning / loss deceleration (arXiv:2506.05447)."""

import itertools

import numpy as np
import pytest
import torch

from alignkit.diagnostics.class_imbalance import frequency_groups, loss_by_frequency, zipf_classification
from alignkit.diagnostics.loss_dynamics import fit_broken_power_law, gradient_conflict, zero_sum_ratio
from alignkit.diagnostics.shift_shapley import conditional_ratio, shapley_values, shift_shapley
from tests.claims_io import interval_figures, record_claims

# --- class imbalance -------------------------------------------------------------------------------------------


def test_frequency_groups_hand_values():
    # counts 50, 30, 10, 5, 5 (N = 100) into 2 groups: samples before each class 0, 50, 80, 90, 95 -> 0,1,1,1,1
    assert frequency_groups(torch.tensor([5, 30, 50, 5, 10]), 2).tolist() == [1, 1, 0, 1, 1]
    # into 4: floor(4 * [0, .5, .8, .9, .95]) = 0, 2, 3, 3, 3 (ordered by frequency)
    assert frequency_groups(torch.tensor([50, 30, 10, 5, 5]), 4).tolist() == [0, 2, 3, 3, 3]
    with pytest.raises(ValueError, match="non-negative"):
        frequency_groups(torch.tensor([1, -1]))


def test_loss_by_frequency_hand_value_and_uniform_limit():
    # two classes, uniform logits: every loss is log 2; gradient share by bias rows: (0.5-1)/n summed ...
    logits = torch.zeros(4, 2)
    y = torch.tensor([0, 0, 0, 1])
    r = loss_by_frequency(logits, y, torch.tensor([3, 1]), n_groups=2)
    assert torch.allclose(r["loss_per_group"], torch.full((2,), float(np.log(2))).double())
    # bias gradient rows: class 0: (4*0.5 - 3)/4 = -0.25, class 1: (4*0.5 - 1)/4 = 0.25 -> equal shares
    assert torch.allclose(r["grad_share_per_group"], torch.tensor([0.5, 0.5], dtype=torch.float64))
    # ignore_index drops padding
    r2 = loss_by_frequency(logits, torch.tensor([0, 0, -100, 1]), torch.tensor([3, 1]), n_groups=2)
    assert r2["samples_per_group"].tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match="counts has 3 classes"):
        loss_by_frequency(logits, y, torch.tensor([1, 2, 3]))


def _train_linear(x, y, C, opt_name, steps, lr):
    torch.manual_seed(0)
    W = torch.zeros(x.shape[1], C, requires_grad=True)
    opt = torch.optim.SGD([W], lr=lr) if opt_name == "gd" else torch.optim.Adam([W], lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(x @ W, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach()


@pytest.mark.slow
def test_heavy_tail_gd_stalls_on_rare_classes_adam_does_not():
    """The paper's claim on its linear softmax model with Zipf class frequencies (full batch from zero weights, so
    the only randomness is the data draw): three data seeds (0, 1, 2), the claim checked on every seed, figures
    as means with 95% Student-t intervals across seeds."""
    from alignkit.eval.metrics import seed_interval

    figs: dict[str, list[float]] = {
        k: [] for k in ("gd_rare", "adam_rare", "gd_frequent", "adam_frequent", "share")
    }
    for seed in (0, 1, 2):
        x, y, counts = zipf_classification(3000, 200, 20, exponent=1.0, seed=seed)
        r0 = loss_by_frequency(x @ torch.zeros(20, 200), y, counts, n_groups=4, features=x)
        assert r0["classes_per_group"][0] < r0["classes_per_group"][-1]  # few frequent, many rare classes
        # gradient at init is dominated by the frequent group
        assert r0["grad_share_per_group"][0] > 0.5
        gd = loss_by_frequency(x @ _train_linear(x, y, 200, "gd", 100, 0.5), y, counts, n_groups=4)
        adam = loss_by_frequency(x @ _train_linear(x, y, 200, "adam", 100, 0.05), y, counts, n_groups=4)
        gap_gd = gd["loss_per_group"][-1] - gd["loss_per_group"][0]
        gap_adam = adam["loss_per_group"][-1] - adam["loss_per_group"][0]
        assert adam["loss_per_group"][-1] < gd["loss_per_group"][-1]  # rare classes: Adam ahead, every seed
        assert gap_gd > 2 * gap_adam  # GD leaves the rare groups far behind the frequent one
        figs["gd_rare"].append(gd["loss_per_group"][-1])
        figs["adam_rare"].append(adam["loss_per_group"][-1])
        figs["gd_frequent"].append(gd["loss_per_group"][0])
        figs["adam_frequent"].append(adam["loss_per_group"][0])
        figs["share"].append(r0["grad_share_per_group"][0])
    iv = {k: seed_interval(v) for k, v in figs.items()}
    record_claims(
        "diag_heavy_tail",
        {
            **interval_figures("gd_rare", iv["gd_rare"]),
            **interval_figures("adam_rare", iv["adam_rare"]),
            "gd_frequent": iv["gd_frequent"]["mean"],
            "adam_frequent": iv["adam_frequent"]["mean"],
            "grad_share_frequent": iv["share"]["mean"],
        },
        tolerance=1e-4,
    )
    assert iv["adam_rare"]["ci95"][1] < iv["gd_rare"]["ci95"][0]  # the across-seed intervals are apart


# --- Shapley ---------------------------------------------------------------------------------------------------


def test_shapley_exact_hand_value_and_axioms():
    # v = additive + interaction: v(S) = sum a_i + 2 [x, y in S] -> phi = a + split interaction equally
    a = {"x": 1.0, "y": 3.0, "z": -0.5}

    def v(s):
        return sum(a[i] for i in s) + (2.0 if {"x", "y"} <= s else 0.0)

    phi = shapley_values(v, list(a), exact=True)
    assert phi == pytest.approx({"x": 2.0, "y": 4.0, "z": -0.5})
    assert sum(phi.values()) == pytest.approx(v(frozenset(a)))  # efficiency


def test_shapley_sampled_matches_exact():
    rng = np.random.default_rng(0)
    players = [f"p{i}" for i in range(6)]
    table = {frozenset(s): float(rng.normal()) for k in range(7) for s in itertools.combinations(players, k)}
    table[frozenset()] = 0.0
    exact = shapley_values(table.__getitem__, players, exact=True)
    sampled = shapley_values(table.__getitem__, players, exact=False, n_permutations=4000, seed=1)
    assert sum(sampled.values()) == pytest.approx(
        table[frozenset(players)]
    )  # efficiency holds per permutation
    assert max(abs(exact[p] - sampled[p]) for p in players) < 0.05


def _scm(n, mu_x, slope, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(mu_x, 1.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-slope * x))).astype(float)
    return x, y


@pytest.mark.slow
def test_shift_shapley_attributes_to_the_shifted_mechanism():
    """SCM X -> Y; a fixed classifier f(x) = [x > 0]. Only P(X) shifts: the whole change goes to X (the Y|X
    mechanism gets ~0); with both shifted, the attributions add up to the total change (efficiency)."""
    n = 4000
    xs, ys = _scm(n, 0.0, 3.0, 0)
    err = ((xs > 0).astype(float) != ys).astype(float)
    xt, yt = _scm(n, 1.0, 3.0, 1)
    w_x = conditional_ratio(xs, None, xt, None, xs, None)
    w_y = conditional_ratio(ys, xs, yt, xt, ys, xs)
    r = shift_shapley(err, {"X": w_x, "Y|X": w_y})
    true_change = float(((xt > 0).astype(float) != yt).mean()) - err.mean()
    assert r["total"] == pytest.approx(true_change, abs=0.03)
    record_claims(
        "diag_shift_shapley",
        {"total": r["total"], "attr_x": r["attribution"]["X"], "attr_y": r["attribution"]["Y|X"]},
        tolerance=1e-6,
    )
    assert abs(r["attribution"]["Y|X"]) < 0.02 and abs(r["attribution"]["X"] - r["total"]) < 0.02
    assert sum(r["attribution"].values()) == pytest.approx(r["total"], abs=1e-12)
    # a mechanism with ratio 1 everywhere gets exactly 0
    r1 = shift_shapley(err, {"X": w_x, "null": np.ones(n)})
    assert r1["attribution"]["null"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="weights\\['X'\\] has shape"):
        shift_shapley(err, {"X": w_x[:10]})


# --- zero-sum learning / deceleration --------------------------------------------------------------------------


def test_zero_sum_ratio_hand_values():
    assert zero_sum_ratio(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.5]))["zero_sum_ratio"] == 0.0
    r = zero_sum_ratio(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 3.0]))
    assert r["zero_sum_ratio"] == 1.0 and r["improved_fraction"] == 0.5
    # d = [-1, -1, +1]: 1 - 1/3
    assert zero_sum_ratio(torch.zeros(3), torch.tensor([-1.0, -1.0, 1.0]))["zero_sum_ratio"] == pytest.approx(
        2 / 3
    )
    with pytest.raises(ValueError, match="entries"):
        zero_sum_ratio(torch.zeros(3), torch.zeros(2))


def test_gradient_conflict():
    g = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert gradient_conflict(g)["interference"] == pytest.approx(0.0)
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    r = gradient_conflict(g)
    assert r["interference"] == pytest.approx(1.0) and r["negative_pairs"] == 1.0 and r["mean_cosine"] == -1.0


def test_broken_power_law_recovers_break():
    t = np.geomspace(10, 1e5, 60)
    lt, c = np.log(t), np.log(800.0)
    y = np.exp(1.5 - 0.5 * lt + (0.5 - 0.05) * np.maximum(0, lt - c))
    r = fit_broken_power_law(t, y)
    assert r["t_star"] == pytest.approx(800.0, rel=0.02)
    assert r["slope_pre"] == pytest.approx(-0.5, abs=1e-3) and r["slope_post"] == pytest.approx(
        -0.05, abs=1e-3
    )
