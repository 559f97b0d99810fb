"""Attribute a change in model performance to distribution shifts with Shapley values (Zhang et al.,
arXiv:2210.10769): exact over all coalitions for few shifted mechanisms, permutation-sampled beyond."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from alignkit.registry import register

PAPER = '"Why did the Model Fail?": Attributing Model Performance Changes to Distribution Shifts'


def shapley_values(
    value: Callable[[frozenset[str]], float],
    players: Sequence[str],
    *,
    exact: bool | None = None,
    n_permutations: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """Shapley values of ``value`` (a set function with ``value(frozenset()) = baseline``) over ``players``.

    ``exact=None`` enumerates all 2^n coalitions for n <= 10 players and samples ``n_permutations`` random
    orderings (antithetic pairs: each ordering and its reverse) beyond. Values of coalitions are cached."""
    players = list(players)
    if len(set(players)) != len(players):
        raise ValueError("players must be distinct")
    n = len(players)
    cache: dict[frozenset[str], float] = {}

    def v(s: frozenset[str]) -> float:
        if s not in cache:
            cache[s] = float(value(s))
        return cache[s]

    if exact is None:
        exact = n <= 10
    phi = dict.fromkeys(players, 0.0)
    if exact:
        for i in players:
            others = [p for p in players if p != i]
            for k in range(n):
                w = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
                for s in itertools.combinations(others, k):
                    fs = frozenset(s)
                    phi[i] += w * (v(fs | {i}) - v(fs))
        return phi
    rng = np.random.default_rng(seed)
    m = 0
    while m < n_permutations:
        perm = [players[j] for j in rng.permutation(n)]
        for order in (perm, perm[::-1]):
            s: frozenset[str] = frozenset()
            prev = v(s)
            for p in order:
                s = s | {p}
                cur = v(s)
                phi[p] += cur - prev
                prev = cur
            m += 1
    return {p: x / m for p, x in phi.items()}


@register(
    name="shift_shapley",
    kind="diagnostic",
    family="distribution_shift",
    paper=PAPER,
    arxiv="2210.10769",
    aliases=("performance_change_attribution",),
    tags=("modality:any", "distribution-shift", "shapley"),
    verification="paper-formula",
)
def shift_shapley(
    losses: np.ndarray,
    weights: Mapping[str, np.ndarray],
    *,
    exact: bool | None = None,
    n_permutations: int = 200,
    self_normalise: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """ "Why did the Model Fail?": Attributing Model Performance Changes to Distribution Shifts (arXiv:2210.10769).

    Factor the data distribution along a causal graph, P(V) = prod_i P(V_i | pa_i). Each mechanism that may have
    shifted between source and target is a player; a coalition S of shifted mechanisms defines a mixed
    distribution (mechanisms in S from the target, the rest from the source) whose expected loss is estimated on
    source samples by importance weights. The Shapley value of that set function splits the total change
    (source -> target) among the mechanisms.

    Formula:
        w_i(x) = P_tgt(v_i | pa_i) / P_src(v_i | pa_i)           (per source sample; see conditional_ratio)
        Perf(S) = sum_n (prod_{i in S} w_i(x_n)) l_n / sum_n prod_{i in S} w_i(x_n)   (self-normalised IS)
        v(S) = Perf(S) - Perf({})
        phi_i = sum_{S not containing i} |S|! (k - |S| - 1)! / k! * (v(S + {i}) - v(S))
        efficiency: sum_i phi_i = v(all) = Perf(target) - Perf(source)

    Hyper-parameters:
        exact: None — all 2^k coalitions for k <= 10 mechanisms, else permutation sampling (ours).
        n_permutations: 200 — ours (sampled mode; antithetic pairs).
        self_normalise: True — ours; divides by the summed weights (False: plain mean of w * l).
        seed: 0 — permutation sampling (ours: any fixed seed).

    ``losses``: (n,) per-sample loss (or 0/1 error) of the model on source samples; ``weights``: mechanism name
    -> (n,) density ratios on those samples. Returns ``attribution`` {mechanism: phi}, ``total`` = v(all),
    ``source`` = Perf({}), ``values`` (the coalition values computed).
    """
    loss = np.asarray(losses, dtype=float)
    if loss.ndim != 1:
        raise ValueError(f"losses must be 1-D (one per source sample); got shape {loss.shape}")
    ws = {}
    for k, w in weights.items():
        w = np.asarray(w, dtype=float)
        if w.shape != loss.shape:
            raise ValueError(f"weights[{k!r}] has shape {w.shape}; losses has {loss.shape}")
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError(f"weights[{k!r}] must be finite and non-negative density ratios")
        ws[k] = w
    if not ws:
        raise ValueError("weights is empty: give one density ratio per shifted mechanism")

    def perf(s: frozenset[str]) -> float:
        w = np.ones_like(loss)
        for k in s:
            w = w * ws[k]
        return float((w * loss).sum() / w.sum()) if self_normalise else float((w * loss).mean())

    base = perf(frozenset())
    values: dict[frozenset[str], float] = {}

    def v(s: frozenset[str]) -> float:
        values[s] = perf(s) - base
        return values[s]

    phi = shapley_values(v, list(ws), exact=exact, n_permutations=n_permutations, seed=seed)
    total = perf(frozenset(ws)) - base
    return {
        "attribution": phi,
        "total": total,
        "source": base,
        "values": {tuple(sorted(k)): x for k, x in values.items()},
    }


def density_ratio(x_src: np.ndarray, x_tgt: np.ndarray, x_eval: np.ndarray, *, C: float = 1.0) -> np.ndarray:
    """``P_tgt(x) / P_src(x)`` at ``x_eval`` from a logistic-regression domain classifier (scikit-learn):
    ratio = (n_src / n_tgt) * p(tgt | x) / p(src | x)."""
    from sklearn.linear_model import LogisticRegression

    xs = np.asarray(x_src, float).reshape(len(x_src), -1)
    xt = np.asarray(x_tgt, float).reshape(len(x_tgt), -1)
    xe = np.asarray(x_eval, float).reshape(-1, xs.shape[1])
    clf = LogisticRegression(C=C, max_iter=1000).fit(
        np.vstack([xs, xt]), np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    )
    p = np.clip(clf.predict_proba(xe)[:, 1], 1e-6, 1 - 1e-6)
    return (len(xs) / len(xt)) * p / (1 - p)


def conditional_ratio(
    src_v: np.ndarray,
    src_pa: np.ndarray | None,
    tgt_v: np.ndarray,
    tgt_pa: np.ndarray | None,
    eval_v: np.ndarray,
    eval_pa: np.ndarray | None,
) -> np.ndarray:
    """``P_tgt(v | pa) / P_src(v | pa)`` = joint ratio / parent ratio, each from a domain classifier
    (:func:`density_ratio`); ``pa=None`` for a root mechanism (the marginal ratio)."""

    def cols(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, float)
        return a.reshape(len(a), -1)

    if src_pa is None:
        return density_ratio(cols(src_v), cols(tgt_v), cols(eval_v))
    joint = density_ratio(
        np.hstack([cols(src_v), cols(src_pa)]),
        np.hstack([cols(tgt_v), cols(tgt_pa)]),
        np.hstack([cols(eval_v), cols(eval_pa)]),
    )
    return joint / density_ratio(cols(src_pa), cols(tgt_pa), cols(eval_pa))
