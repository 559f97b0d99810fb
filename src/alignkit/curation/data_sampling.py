"""Efficient alignment via data sampling: alignment performance plateaus exponentially with data size, so a small
information-rich subset suffices — ISA (information-theoretic subsampling for alignment) picks it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from alignkit.curation._common import annotated, check_fraction, n_keep
from alignkit.registry import register

PAPER = "Efficient Alignment of Large Language Models via Data Sampling"
ARXIV = "2411.10545"


def fit_gmm_diag(
    x: np.ndarray, *, n_components: int = 2, iters: int = 100, seed: int = 0, reg: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A diagonal-covariance Gaussian mixture fitted by EM: ``(weights (K,), means (K, D), variances (K, D))``."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    rng = np.random.default_rng(seed)
    means = x[rng.choice(n, size=n_components, replace=n < n_components)].copy()
    var = np.tile(x.var(0) + reg, (n_components, 1))
    w = np.full(n_components, 1.0 / n_components)
    for _ in range(iters):
        logp = _component_logp(x, w, means, var)
        resp = np.exp(logp - logp.max(1, keepdims=True))
        resp /= resp.sum(1, keepdims=True)
        nk = resp.sum(0) + 1e-12
        w = nk / n
        means = (resp.T @ x) / nk[:, None]
        var = (resp.T @ (x * x)) / nk[:, None] - means**2 + reg
        var = np.maximum(var, reg)
    return w, means, var


def _component_logp(x: np.ndarray, w: np.ndarray, means: np.ndarray, var: np.ndarray) -> np.ndarray:
    diff = x[:, None, :] - means[None]
    return np.log(w)[None] - 0.5 * (np.log(2 * math.pi * var)[None] + diff**2 / var[None]).sum(-1)


def gmm_log_density(x: np.ndarray, w: np.ndarray, means: np.ndarray, var: np.ndarray) -> np.ndarray:
    """log p(x_i) under the mixture, per row."""
    lp = _component_logp(np.asarray(x, dtype=np.float64), w, means, var)
    m = lp.max(1, keepdims=True)
    return (m + np.log(np.exp(lp - m).sum(1, keepdims=True)))[:, 0]


def isa_entropy_change(features: np.ndarray, *, n_components: int = 2, seed: int = 0) -> np.ndarray:
    """Per row, the entropy change of the data set when the row is removed, under a 2-component GMM fitted to
    all rows (resubstitution entropy estimate H = -mean_i log p(x_i))."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be (rows >= 2, dim), got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise ValueError(f"features: row {bad} is not finite")
    logp = gmm_log_density(x, *fit_gmm_diag(x, n_components=n_components, seed=seed))
    n = x.shape[0]
    h_all = -logp.mean()
    h_without = (n * h_all + logp) / (n - 1)  # = -(sum_j log p_j - log p_i) / (n - 1)
    return h_all - h_without


def isa_select(
    rows: Sequence[dict[str, Any]],
    features: np.ndarray,
    *,
    frac: float = 0.1,
    n_components: int = 2,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Efficient Alignment of Large Language Models via Data Sampling (Khera, Ghosh, Dutta, 2024;
    arXiv:2411.10545) — ISA, information-theoretic subsampling: fit a two-component Gaussian mixture to the
    rows' embeddings, score each row by the change of the data set's entropy when it is removed, and keep the
    rows that carry the most information (largest entropy change); reported to match full-data alignment with
    3.5-10% of the data.

    Formula:
        p = GMM_2(features)                         (diagonal covariances, EM)
        H(D) = -1/|D| sum_{x in D} log p(x)
        dH_i = H(D) - H(D \\ {i}) = (-log p(x_i) - H(D)) / (|D| - 1)
        keep = argsort_descending(dH)[: ceil(frac * N)]          (input order preserved)

    Hyper-parameters:
        frac: 0.1 — fraction kept (the paper reports 3.5-10% of the data suffices).
        n_components: 2 — the paper's two-component GMM.
        seed: 0 — EM initialisation. Operational (alignkit's interface, not a paper hyper-parameter).

    ``features``: (N, D) embeddings of the rows (any encoder). Each kept row gets ``entropy_change``.
    Unverified: the paper body was not read. Structure (two-component GMM, entropy-based sampling, 3.5-10%)
    is from the abstract/summaries; the per-element "entropy change when removed" score is from the authors'
    related patent application (US-20260073236-A1: "entropy change value based on a difference between the
    entropy of the dataset and an entropy specific to the alignment data element ... with the element removed").
    Which end is kept (largest change) and the entropy estimator (resubstitution, fixed mixture) are ours.

    Guessed after re-checking: the sampling rule (a second search, issue #14, found only summaries: a
    two-component Gaussian mixture and entropy-based selection); with a fixed mixture it reduces to keeping
    the lowest-density rows; still guessed.
    """
    check_fraction("frac", frac)
    rows = list(rows)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(rows):
        raise ValueError(f"features must be (rows={len(rows)}, dim), got shape {x.shape}")
    dh = isa_entropy_change(x, n_components=n_components, seed=seed)
    keep = sorted(sorted(range(len(rows)), key=lambda i: (-dh[i], i))[: n_keep(len(rows), frac)])
    return annotated(rows, keep, "entropy_change", dh)


def fit_exp_plateau(
    n: Sequence[float], perf: Sequence[float], *, tau_grid: Sequence[float] | None = None
) -> dict[str, float]:
    """The paper's data-scaling finding — alignment performance follows an exponential plateau — as a fit:
    ``P(n) = P_inf - (P_inf - P_0) exp(-n / tau)``. Least squares over a log-spaced tau grid (P_inf, P_0 are
    linear given tau). Returns ``{"p_inf", "p0", "tau", "sse"}``. The exact parameterisation in the paper is
    unverified."""
    n_arr, p_arr = np.asarray(n, dtype=np.float64), np.asarray(perf, dtype=np.float64)
    if n_arr.shape != p_arr.shape or n_arr.ndim != 1 or n_arr.size < 3:
        raise ValueError("n and perf must be 1-D of the same length >= 3")
    if (n_arr < 0).any():
        raise ValueError("n must be >= 0")
    if tau_grid is None:
        span = max(float(n_arr.max()), 1.0)
        tau_grid = np.geomspace(span / 1000, span * 10, 2000)
    best: dict[str, float] | None = None
    for tau in tau_grid:
        e = np.exp(-n_arr / tau)
        a = np.stack([1 - e, e], 1)  # P = P_inf (1 - e) + P_0 e
        coef, *_ = np.linalg.lstsq(a, p_arr, rcond=None)
        sse = float(((a @ coef - p_arr) ** 2).sum())
        if best is None or sse < best["sse"]:
            best = {"p_inf": float(coef[0]), "p0": float(coef[1]), "tau": float(tau), "sse": sse}
    assert best is not None
    return best


register(
    name="isa",
    verification="reconstruction",
    kind="data_rule",
    family="curation",
    paper=PAPER,
    arxiv=ARXIV,
    aliases=("information_theoretic_subsampling",),
    tags=("preference", "sft", "data-selection", "subsampling"),
    summary="keep the rows with the largest entropy change under a 2-component GMM of their embeddings",
)(isa_select)
