"""Loss-to-loss prediction (Brandfonbrener et al., arXiv:2411.12925): a shifted power law maps one loss to another."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from alignkit.scaling._law import columns, scaling_law

PAPER = "Loss-to-Loss Prediction: Scaling Laws for All Datasets"
BOUNDS = {"K": (1e-3, 1e3), "kappa": (0.05, 5.0), "E0": (0.0, 20.0), "E1": (0.0, 20.0)}


def shifted_power_law(loss_x: np.ndarray, K: float, kappa: float, E0: float, E1: float) -> np.ndarray:
    """``K * (loss_x - E0)^kappa + E1`` (the base of the loss is clipped at 1e-12 so a fit never takes a root of
    a negative number; a fit that needs ``E0 >= min(loss_x)`` is a wrong fit and shows as a large residual)."""
    return K * np.clip(loss_x - E0, 1e-12, None) ** kappa + E1


@scaling_law(
    name="loss_to_loss",
    paper=PAPER,
    arxiv="2411.12925",
    inputs=("loss_x",),
    target="loss_y",
    bounds=BOUNDS,
    tags=("train-to-train", "train-to-test", "test-to-test"),
    verification="paper-formula",
)
def loss_to_loss(
    x: Mapping[str, Any], *, K: float = 1.0, kappa: float = 1.0, E0: float = 0.0, E1: float = 0.0
) -> np.ndarray:
    """Loss-to-Loss Prediction: Scaling Laws for All Datasets (arXiv:2411.12925).

    Two losses of models paired by training compute (train-to-train), or of one model on its training data and
    on a downstream set (train-to-test), or of two models on one test set (test-to-test), lie on a shifted
    power law. E0 and E1 are the irreducible losses of the two distributions.

    Formula:
        loss_y = K * (loss_x - E0)^kappa + E1

    Hyper-parameters:
        K: 1.0 — ours (identity map); the paper fits K, kappa per pair of distributions.
        kappa: 1.0 — ours (identity map).
        E0: 0.0 — ours; the paper takes E0, E1 from each distribution's compute law (the E of its Kaplan-form fit).
        E1: 0.0 — ours.

    Columns: ``loss_x``, ``loss_y``. The form is the authors' ``power_law_with_constant(x, kappa, K, E0, E1)``
    (KempnerInstitute/loss-to-loss-notebooks, ``utils_plotting.py``). Fitted on the authors' runs with E0, E1
    fixed, it reproduces the paper's K and kappa for 9 pairs within 0.014 (tests/scaling/test_published.py,
    docs/scaling.md).
    """
    (lx,) = columns(x, ("loss_x",), "loss_to_loss")
    return shifted_power_law(lx, K, kappa, E0, E1)
