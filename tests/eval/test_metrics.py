"""The evaluation figures against closed forms and hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alignkit.eval.metrics import (
    bootstrap_ci,
    idealized_ranking_accuracy,
    likelihood_displacement,
    mean_ci,
    pass_at_k,
    ranking_accuracy,
    sequence_kl,
    win_rates,
)


def test_bootstrap_ci_covers_known_mean_at_nominal_rate():
    # 300 data sets of 100 draws from N(0.3, 1): the 95% CI should cover 0.3 about 95% of the time.
    rng = np.random.default_rng(0)
    covered = 0
    reps = 300
    for i in range(reps):
        x = rng.normal(0.3, 1.0, size=100)
        lo, hi = bootstrap_ci(x, n_resamples=1000, seed=i)
        assert lo < x.mean() < hi
        covered += lo <= 0.3 <= hi
    # percentile bootstrap runs slightly liberal at n=100; binomial sd at p=0.95 over 300 reps is 0.0126
    assert 0.90 <= covered / reps <= 0.99


def test_bootstrap_ci_width_matches_normal_theory():
    x = np.random.default_rng(1).normal(0.0, 2.0, size=2000)
    lo, hi = bootstrap_ci(x, n_resamples=4000)
    expected = 2 * 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert hi - lo == pytest.approx(expected, rel=0.1)


def test_mean_ci_and_constant_values():
    out = mean_ci([0.5] * 10)
    assert out == {"mean": 0.5, "ci95": [0.5, 0.5], "n": 10}


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="values is empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20])
def test_pass_at_k_equals_closed_form(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            closed = 1.0 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-12)


def test_pass_at_k_special_cases():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 = c/n
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(4, 1, 4) == 1.0
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(3, 1, 4)


def test_pass_at_k_is_unbiased_for_the_true_pass_probability():
    # With per-sample success probability q, pass@k = 1 - (1 - q)^k; the estimator's mean over many draws of
    # n samples must match it.
    rng = np.random.default_rng(2)
    q, n, k = 0.2, 10, 4
    est = [pass_at_k(n, int(rng.binomial(n, q)), k) for _ in range(20000)]
    assert np.mean(est) == pytest.approx(1 - (1 - q) ** k, abs=0.01)


def test_sequence_kl_and_shape_errors():
    assert sequence_kl([-1.0, -2.0], [-1.5, -2.0]).tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match="policy_logps has shape"):
        sequence_kl([-1.0], [-1.0, -2.0])


def test_win_rates_by_hand():
    # prompt 0: policy {1, 0} vs baseline {0}: wins 1, ties 1 -> (1 + 0.5) / 2 = 0.75
    # prompt 1: policy {0, 0} vs baseline {1}: 0
    out = win_rates([[1.0, 0.0], [0.0, 0.0]], [[0.0], [1.0]])
    assert out.tolist() == [0.75, 0.0]
    # a policy against itself wins half the time
    r = np.random.default_rng(0).normal(size=(50, 4))
    assert win_rates(r, r).mean() == pytest.approx(0.5)


def test_ranking_accuracy_by_hand():
    assert ranking_accuracy([-1.0, -5.0, -2.0], [-2.0, -1.0, -2.0]).tolist() == [1.0, 0.0, 0.0]


def test_idealized_ranking_accuracy_by_hand():
    # ref prefers the rejected by 2 nats; alpha = sigmoid(1) -> log-odds 1; with beta = 1 the optimum still
    # ranks rejected first (1 - 2 < 0); with beta = 0.25 it flips (4 - 2 > 0).
    alpha = 1 / (1 + math.exp(-1))
    assert idealized_ranking_accuracy([-3.0], [-1.0], [alpha], beta=1.0).tolist() == [0.0]
    assert idealized_ranking_accuracy([-3.0], [-1.0], [alpha], beta=0.25).tolist() == [1.0]
    # alpha = 1/2 (no preference): the reference decides
    assert idealized_ranking_accuracy([-1.0], [-3.0], [0.5], beta=0.1).tolist() == [1.0]
    with pytest.raises(ValueError, match="beta"):
        idealized_ranking_accuracy([-1.0], [-1.0], [0.5], beta=0.0)
    with pytest.raises(ValueError, match="p_chosen"):
        idealized_ranking_accuracy([-1.0], [-1.0], [1.5], beta=1.0)


def test_likelihood_displacement_by_hand():
    out = likelihood_displacement([-10.0, -10.0], [-12.0, -9.0], [-10.0, -10.0], [-20.0, -16.0])
    assert out["chosen"]["mean"] == pytest.approx(-0.5)
    assert out["rejected"]["mean"] == pytest.approx(-8.0)
    assert out["chosen_fell"] == 0.5


def test_holm_by_hand():
    from alignkit.eval import holm

    # p = (0.01, 0.04, 0.03, 0.005), m = 4; sorted 0.005, 0.01, 0.03, 0.04 scaled by 4, 3, 2, 1:
    # 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    out = holm([0.01, 0.04, 0.03, 0.005])
    assert out["adjusted"] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert out["reject"] == [True, False, False, True]
    # one comparison: no correction; adjusted values are capped at 1
    assert holm([0.04])["adjusted"] == [0.04] and holm([0.6, 0.7])["adjusted"] == [1.0, 1.0]
    # Holm is never stricter than Bonferroni and never looser than the uncorrected test
    p = [0.001, 0.02, 0.2]
    assert all(b <= min(1, 3 * q) and b >= q for b, q in zip(holm(p)["adjusted"], p, strict=True))
    with pytest.raises(ValueError, match="p_values"):
        holm([1.5])


def test_bootstrap_p_value_matches_the_interval():
    from alignkit.eval import bootstrap_ci, bootstrap_p_value

    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 1.0, 200)
    lo, hi = bootstrap_ci(x)
    assert lo > 0 and bootstrap_p_value(x) < 0.05  # 0 outside the interval <-> p < 0.05
    assert bootstrap_p_value(x, null=float(x.mean())) > 0.9  # the sample mean itself: p near 1
    assert bootstrap_p_value(x, null=100.0) == pytest.approx(2 / 2001)  # nothing beyond it: the +1 floor
