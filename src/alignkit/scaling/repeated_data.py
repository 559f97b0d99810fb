"""Repeated data (Hernandez et al., arXiv:2205.10487): damage from repetition measured in effective parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from alignkit.scaling._law import columns, scaling_law

PAPER = "Scaling Laws and Interpretability of Learning from Repeated Data"


@scaling_law(
    name="repeated_data",
    paper=PAPER,
    arxiv="2205.10487",
    aliases=("effective_params_law",),
    inputs=("params",),
    target="loss",
    bounds={"Nc": (1e6, 1e18), "alpha_N": (0.01, 1.0)},
    tags=("repetition", "effective-parameters"),
    verification="reconstruction",
)
def repeated_data(x: Mapping[str, Any], *, Nc: float = 8.8e13, alpha_N: float = 0.076) -> np.ndarray:
    """Scaling Laws and Interpretability of Learning from Repeated Data (arXiv:2205.10487).

    Reconstruction: the paper prints no data table we could read; the law is Kaplan's with the paper's
    effective-size conversion, checked on synthetic data drawn from it.

    The paper measures the damage of repeating a small fraction of the data as the size of a model trained on
    unique data that reaches the same test loss ("an 800M model degraded to a 400M one"). Fit the unique-data
    law to runs without repetition, then :func:`effective_params` maps a damaged run's loss to its effective
    size. The paper's double-descent curve in the repeated fraction has no closed form and is not fitted here.

    Formula:
        L(N) = (N_c / N)^alpha_N                       (unique data, converged; Kaplan et al. eq. 1.1)
        N_eff(L) = N_c * L^(-1/alpha_N);   damage = N_eff / N

    Hyper-parameters:
        Nc: 8.8e13 — Kaplan et al. (arXiv:2001.08361) eq. 1.1, the unique-data law the paper compares with.
        alpha_N: 0.076 — same.
    """
    (n,) = columns(x, ("params",), "repeated_data")
    return (Nc / n) ** alpha_N


def effective_params(loss: float | np.ndarray, *, Nc: float = 8.8e13, alpha_N: float = 0.076) -> np.ndarray:
    """The unique-data model size whose loss is ``loss`` (the inverse of :func:`repeated_data`)."""
    return Nc * np.asarray(loss, dtype=float) ** (-1.0 / alpha_N)


def repeated_subset_indices(
    n_unique: int, frac_repeated: float, repeats: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's data protocol: a token budget of ``n_unique`` draws where a fraction ``frac_repeated`` of the
    draws comes from a small subset seen ``repeats`` times and the rest are unique. Returns (order of draws,
    the repeated subset's ids); ids ``< n_unique`` index the unique pool."""
    if not 0 <= frac_repeated < 1 or repeats < 1:
        raise ValueError("frac_repeated must be in [0, 1) and repeats >= 1")
    n_rep_draws = int(round(frac_repeated * n_unique))
    n_subset = max(1, n_rep_draws // repeats) if n_rep_draws else 0
    rng = np.random.default_rng(seed)
    subset = rng.choice(n_unique, size=n_subset, replace=False)
    unique_pool = np.setdiff1d(np.arange(n_unique), subset)[: n_unique - n_subset * repeats]
    draws = np.concatenate([unique_pool, np.repeat(subset, repeats)])
    return rng.permutation(draws), subset
