"""Time Matters (Inbar & Sernau, arXiv:2406.18922): a scaling law in wall-clock time instead of tokens.

The loss law is Chinchilla's ``L(N, D) = E + A/N^alpha + B/D^beta`` (Hoffmann et al., arXiv:2203.15556, whose
fitted constants are the defaults here); Time Matters replaces the token count by what a model of that shape
reads in the time budget, ``D = throughput(N, shape) * T``, with the time per step predicted by a linear model
of the bytes each step moves (its "memory-copy" accounting) rather than by FLOPs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alignkit.scaling._law import columns, scaling_law

PAPER = "Time Matters: Scaling Laws for Any Budget"
CHINCHILLA = "Training Compute-Optimal Large Language Models"
CHINCHILLA_BOUNDS = {
    "E": (0.0, 10.0),
    "A": (1e-2, 1e5),
    "B": (1e-2, 1e5),
    "alpha": (0.01, 1.5),
    "beta": (0.01, 1.5),
}


@scaling_law(
    name="chinchilla",
    paper=CHINCHILLA,
    arxiv="2203.15556",
    inputs=("params", "tokens"),
    target="loss",
    bounds=CHINCHILLA_BOUNDS,
    tags=("compute-optimal",),
    verification="paper-formula",
)
def chinchilla(
    x: Mapping[str, Any],
    *,
    E: float = 1.69,
    A: float = 406.4,
    B: float = 410.7,
    alpha: float = 0.34,
    beta: float = 0.28,
) -> np.ndarray:
    """Training Compute-Optimal Large Language Models (arXiv:2203.15556) — the law Time Matters builds on.

    Formula:
        L(N, D) = E + A / N^alpha + B / D^beta         (N parameters, D training tokens)
        compute-optimal at C = 6 N D:  N_opt = G (C/6)^(beta/(alpha+beta)),  G = (alpha A / (beta B))^(1/(alpha+beta))

    Hyper-parameters:
        E: 1.69 — Hoffmann et al. §3.3 (Approach 3, eq. 10).
        A: 406.4 — same.
        B: 410.7 — same.
        alpha: 0.34 — same.
        beta: 0.28 — same.

    Refitted with Hoffmann's procedure (``huber=1e-3``) on the 240 runs Besiroglu et al. (arXiv:2404.10102)
    transcribed from the paper's Figure 4, the law gives E 1.82, A 478, B 2144, alpha 0.347, beta 0.367 — the
    replication's values, not eq. 10 (tests/scaling/test_published.py, docs/scaling.md).
    """
    n, d = columns(x, ("params", "tokens"), "chinchilla")
    return E + A / n**alpha + B / d**beta


@scaling_law(
    name="time_matters",
    paper=PAPER,
    arxiv="2406.18922",
    aliases=("time_budget_law",),
    inputs=("params", "seconds", "tokens_per_second"),
    target="loss",
    bounds=CHINCHILLA_BOUNDS,
    tags=("wall-clock",),
    verification="reconstruction",
)
def time_matters(
    x: Mapping[str, Any],
    *,
    E: float = 1.69,
    A: float = 406.4,
    B: float = 410.7,
    alpha: float = 0.34,
    beta: float = 0.28,
) -> np.ndarray:
    """Time Matters: Scaling Laws for Any Budget (arXiv:2406.18922).

    Loss as a function of model size and wall-clock budget: the tokens a model reads are its measured (or
    predicted, :func:`fit_time_model`) throughput times the time budget.

    Formula:
        L(N, T) = E + A / N^alpha + B / (tokens_per_second(N) * T)^beta

    Hyper-parameters:
        E: 1.69 — Chinchilla's constants (arXiv:2203.15556 eq. 10), which Time Matters starts from; the paper's
            own refit on its 1,535 C4 models was not readable here.
        A: 406.4 — same.
        B: 410.7 — same.
        alpha: 0.34 — same.
        beta: 0.28 — same.
    """
    n, t, tps = columns(x, ("params", "seconds", "tokens_per_second"), "time_matters")
    return E + A / n**alpha + B / (tps * t) ** beta


def fit_time_model(features: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Least-squares ``seconds ~ w0 + features @ w`` (the paper's linear model of step time from the bytes moved
    per step); returns ``[w0, w...]``. ``features``: (n, k) — e.g. bytes of weights and of activations per step."""
    f = np.asarray(features, dtype=float)
    s = np.asarray(seconds, dtype=float)
    if f.ndim != 2 or f.shape[0] != s.shape[0]:
        raise ValueError(f"features must be (n, k) with n = len(seconds); got {f.shape} and {s.shape}")
    design = np.hstack([np.ones((f.shape[0], 1)), f])
    coef, *_ = np.linalg.lstsq(design, s, rcond=None)
    return coef


def predict_time(coef: np.ndarray, features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=float)
    return coef[0] + f @ coef[1:]


def best_size_for_time(
    seconds: float, sizes: Sequence[float], tokens_per_second: Sequence[float], **coefficients: float
) -> tuple[float, np.ndarray]:
    """The model size with the lowest predicted loss in ``seconds`` (each size with its throughput), and the
    predicted losses of all candidates."""
    if len(sizes) != len(tokens_per_second):
        raise ValueError("sizes and tokens_per_second must have the same length")
    x = {
        "params": np.asarray(sizes, float),
        "seconds": np.full(len(sizes), float(seconds)),
        "tokens_per_second": np.asarray(tokens_per_second, float),
    }
    losses = time_matters(x, **coefficients)
    return float(x["params"][int(np.argmin(losses))]), losses


def chinchilla_optimal_params(compute: float, **coefficients: float) -> float:
    """Analytic compute-optimal N at ``C = 6 N D`` for the Chinchilla law (defaults: the paper's constants)."""
    c = {**chinchilla.defaults, **coefficients}
    g = (c["alpha"] * c["A"] / (c["beta"] * c["B"])) ** (1 / (c["alpha"] + c["beta"]))
    return g * (compute / 6) ** (c["beta"] / (c["alpha"] + c["beta"]))
