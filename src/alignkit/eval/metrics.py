"""Evaluation figures of the testbed, as pure functions of numbers (no models): every figure comes with a 95%
percentile-bootstrap confidence interval over prompts.

- :func:`bootstrap_ci` / :func:`mean_ci` — mean and 95% bootstrap CI of per-prompt values.
- :func:`seed_interval` — mean of per-seed figures with its 95% Student-t interval across training seeds.
- :func:`bootstrap_p_value` / :func:`holm` — a two-sided bootstrap p-value for a mean (e.g. of paired differences)
  and Holm's step-down correction over a family of such comparisons (Holm 1979, "A Simple Sequentially Rejective
  Multiple Test Procedure", Scand. J. Statist. 6:65–70).
- :func:`pass_at_k` — the unbiased pass@k estimator (Chen et al. 2021, arXiv:2107.03374).
- :func:`sequence_kl` — per-sample estimate of sequence-level KL(pi || ref) from samples of pi.
- :func:`win_rates` — per-prompt probability that a policy sample beats a baseline sample by gold reward.
- :func:`ranking_accuracy` / :func:`idealized_ranking_accuracy` — "Preference Learning Algorithms Do Not Learn
  Preference Rankings" (Chen et al. 2024, arXiv:2405.19534).
- :func:`likelihood_displacement` — change of chosen and rejected log-probs during training ("Unintentional
  Unalignment: Likelihood Displacement in Direct Preference Optimization", Razin et al. 2024, arXiv:2410.08847).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from alignkit.registry import register


def _as_array(name: str, values: Sequence[float] | np.ndarray, *, ndim: int = 1) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional; got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds a non-finite value at index {int(np.argmin(np.isfinite(arr)))}")
    return arr


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval for the mean of ``values`` (resampling the values, e.g. prompts)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    arr = _as_array("values", values)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_resamples, arr.size))
    means = arr[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def mean_ci(
    values: Sequence[float] | np.ndarray, *, seed: int = 0, n_resamples: int = 2000
) -> dict[str, Any]:
    """``{"mean": m, "ci95": [lo, hi], "n": len}`` for per-prompt values."""
    arr = _as_array("values", values)
    lo, hi = bootstrap_ci(arr, seed=seed, n_resamples=n_resamples)
    return {"mean": float(arr.mean()), "ci95": [lo, hi], "n": int(arr.size)}


def seed_interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean of per-seed figures with its 95% Student-t interval across seeds (``[m, m]`` for one seed)."""
    import statistics

    from scipy.stats import t

    xs = [float(v) for v in values]
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return {"mean": m, "ci95": [m, m], "n": len(xs), "values": xs}
    h = float(t.ppf(0.975, len(xs) - 1)) * statistics.stdev(xs) / math.sqrt(len(xs))
    return {"mean": m, "ci95": [m - h, m + h], "n": len(xs), "values": xs}


def bootstrap_p_value(
    values: Sequence[float] | np.ndarray, *, null: float = 0.0, n_resamples: int = 2000, seed: int = 0
) -> float:
    """Two-sided percentile-bootstrap p-value for "the mean of ``values`` equals ``null``":
    ``p = min(1, 2·min(#{m* <= null} + 1, #{m* >= null} + 1) / (B + 1))`` over ``B`` resampled means ``m*``
    (the +1 keeps ``p > 0``; the same resamples as :func:`bootstrap_ci` with the same seed, so ``p < 0.05`` exactly
    when ``null`` lies outside the 95% interval, up to the +1)."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    arr = _as_array("values", values)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(n_resamples, arr.size))].mean(axis=1)
    tail = min(int((means <= null).sum()), int((means >= null).sum())) + 1
    return float(min(1.0, 2 * tail / (n_resamples + 1)))


def holm(p_values: Sequence[float], *, alpha: float = 0.05) -> dict[str, list[Any]]:
    """Holm's step-down correction of ``m`` p-values: sort ascending, ``p_(i)`` is rejected while
    ``p_(j) <= alpha / (m - j + 1)`` for every ``j <= i`` (1-based); adjusted ``p~_(i) = max_{j<=i} min(1,
    (m - j + 1)·p_(j))``. Controls the family-wise error rate at ``alpha`` under any dependence. Returns
    ``{"adjusted": [...], "reject": [...]}`` in the input order."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"p_values must be a non-empty list of numbers in [0, 1]; got {list(p_values)}")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted_sorted = np.maximum.accumulate(scaled)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return {"adjusted": [float(a) for a in adjusted], "reject": [bool(a <= alpha) for a in adjusted]}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 - C(n-c, k) / C(n, k)``."""
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError("pass_at_k takes integers n, c, k")
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs n >= 1, 0 <= c <= n, 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # numerically stable product form of 1 - C(n-c, k)/C(n, k)
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def sequence_kl(
    policy_logps: Sequence[float] | np.ndarray, ref_logps: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Per-sample ``log pi(y|x) - log ref(y|x)`` for ``y ~ pi``; its mean estimates KL(pi || ref) per sequence."""
    p = _as_array("policy_logps", policy_logps)
    r = _as_array("ref_logps", ref_logps)
    if p.shape != r.shape:
        raise ValueError(f"policy_logps has shape {p.shape} but ref_logps has {r.shape}")
    return p - r


def win_rates(
    policy_rewards: Sequence[Sequence[float]] | np.ndarray,
    baseline_rewards: Sequence[Sequence[float]] | np.ndarray,
) -> np.ndarray:
    """Per prompt, P(policy sample beats baseline sample) + 0.5 P(tie), over all sample pairs at that prompt.

    Arguments are ``(prompts, samples)`` gold rewards; the number of samples may differ between the two.
    """
    p = _as_array("policy_rewards", policy_rewards, ndim=2)
    b = _as_array("baseline_rewards", baseline_rewards, ndim=2)
    if p.shape[0] != b.shape[0]:
        raise ValueError(f"policy_rewards covers {p.shape[0]} prompts but baseline_rewards {b.shape[0]}")
    diff = p[:, :, None] - b[:, None, :]
    return (diff > 0).mean(axis=(1, 2)) + 0.5 * (diff == 0).mean(axis=(1, 2))


def ranking_accuracy(
    chosen_logps: Sequence[float] | np.ndarray, rejected_logps: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Per pair, 1 if the model ranks the chosen completion above the rejected one (``log pi(y_w) > log pi(y_l)``)."""
    c = _as_array("chosen_logps", chosen_logps)
    r = _as_array("rejected_logps", rejected_logps)
    if c.shape != r.shape:
        raise ValueError(f"chosen_logps has shape {c.shape} but rejected_logps has {r.shape}")
    return (c > r).astype(np.float64)


@register(
    name="idealized_ranking_accuracy",
    kind="metric",
    family="preference",
    paper="Preference Learning Algorithms Do Not Learn Preference Rankings",
    arxiv="2405.19534",
    tags=("ranking", "evaluation"),
    summary="whether the idealized RLHF/DPO optimum ranks the chosen completion first, per pair",
    verification="paper-formula",
)
def idealized_ranking_accuracy(
    ref_chosen_logps: Sequence[float] | np.ndarray,
    ref_rejected_logps: Sequence[float] | np.ndarray,
    p_chosen: Sequence[float] | np.ndarray,
    beta: float,
) -> np.ndarray:
    """Preference Learning Algorithms Do Not Learn Preference Rankings (Chen et al. 2024, arXiv:2405.19534,
    Theorem 3.1): per pair, whether the *idealized* policy of the RLHF/DPO objective ranks the chosen
    completion first.

    With the true preference probability ``alpha = P(y_w > y_l)`` and the optimum
    ``pi*(y) ∝ ref(y) exp(r*(y) / beta)`` (Bradley-Terry: r*(y_w) - r*(y_l) = log(alpha / (1 - alpha))):

    Formula:
        m = log ref(y_w) - log ref(y_l) + log(alpha / (1 - alpha)) / beta
        idealized ranking accuracy = 1[m > 0] + 0.5 * 1[m = 0]   (per pair; the figure is its mean)

    Hyper-parameters:
        beta: no default — the KL coefficient of the objective being idealized (the paper evaluates the beta
            each model was trained with; ``alignkit eval --beta``).
    """
    if not beta > 0:
        raise ValueError(f"beta must be positive; got {beta}")
    c = _as_array("ref_chosen_logps", ref_chosen_logps)
    r = _as_array("ref_rejected_logps", ref_rejected_logps)
    a = _as_array("p_chosen", p_chosen)
    if not (c.shape == r.shape == a.shape):
        raise ValueError(f"shapes differ: ref_chosen {c.shape}, ref_rejected {r.shape}, p_chosen {a.shape}")
    if ((a < 0) | (a > 1)).any():
        raise ValueError("p_chosen must hold probabilities in [0, 1]")
    a = np.clip(a, 1e-12, 1 - 1e-12)
    margin = c - r + np.log(a / (1 - a)) / beta
    return (margin > 0).astype(np.float64) + 0.5 * (margin == 0)


def likelihood_displacement(
    before_chosen: Sequence[float] | np.ndarray,
    after_chosen: Sequence[float] | np.ndarray,
    before_rejected: Sequence[float] | np.ndarray,
    after_rejected: Sequence[float] | np.ndarray,
) -> dict[str, Any]:
    """Change of the chosen and rejected sequence log-probs (after - before), each as mean with 95% CI, plus the
    share of pairs whose chosen log-prob *fell* (likelihood displacement, arXiv:2410.08847)."""
    bc, ac = _as_array("before_chosen", before_chosen), _as_array("after_chosen", after_chosen)
    br, ar = _as_array("before_rejected", before_rejected), _as_array("after_rejected", after_rejected)
    if not (bc.shape == ac.shape == br.shape == ar.shape):
        raise ValueError("before/after chosen/rejected log-probs must have the same shape")
    dc, dr = ac - bc, ar - br
    return {
        "chosen": mean_ci(dc),
        "rejected": mean_ci(dr),
        "chosen_fell": float((dc < 0).mean()),
    }


def finite_or_none(x: float | None) -> float | None:
    """``x`` as a float, or None when it is missing or not finite (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
