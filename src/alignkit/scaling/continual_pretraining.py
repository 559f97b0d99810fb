"""Continual pre-training dynamics (Wang et al., arXiv:2505.07796): the CPT loss curve as the base model's hidden
curve under learning-rate annealing plus a distribution-shift term that saturates with the CPT forward area."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alignkit.scaling._law import columns, scaling_law

PAPER = "Learning Dynamics in Continual Pre-Training for Large Language Models"


def lr_areas(lrs: Sequence[float], *, decay: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """Forward area ``S1`` and annealing area ``S2`` after each step of a learning-rate schedule.

    ``S1(s) = sum_{i<=s} eta_i``; ``S2(s) = sum_{i<=s} m_i`` with ``m_i = decay * m_{i-1} + (eta_{i-1} - eta_i)``
    (the momentum form of the annealing area, Tissue et al., arXiv:2408.11029; decay 0.999 is theirs).
    A constant schedule has ``S2 = 0``."""
    eta = np.asarray(lrs, dtype=float)
    if eta.ndim != 1 or eta.size == 0:
        raise ValueError("lrs must be a non-empty 1-D sequence of learning rates")
    s1 = np.cumsum(eta)
    m = 0.0
    s2 = np.zeros_like(eta)
    total = 0.0
    for i in range(eta.size):
        drop = eta[i - 1] - eta[i] if i > 0 else 0.0
        m = decay * m + drop
        total += m
        s2[i] = total
    return s1, s2


@scaling_law(
    name="cpt_law",
    paper=PAPER,
    arxiv="2505.07796",
    aliases=("continual_pretraining_law",),
    inputs=("s1", "s2", "s1_cpt"),
    target="loss",
    bounds={
        "L0": (0.0, 20.0),
        "A": (1e-4, 1e3),
        "alpha": (0.01, 3.0),
        "C": (0.0, 1e3),
        "B": (-20.0, 20.0),
        "E": (1e-4, 1e3),
        "beta": (0.01, 5.0),
    },
    tags=("learning-rate-schedule", "continual-pretraining"),
    verification="reconstruction",
)
def cpt_law(
    x: Mapping[str, Any],
    *,
    L0: float = 2.0,
    A: float = 0.5,
    alpha: float = 0.5,
    C: float = 0.3,
    B: float = 0.4,
    E: float = 0.5,
    beta: float = 1.0,
) -> np.ndarray:
    """Learning Dynamics in Continual Pre-Training for Large Language Models (arXiv:2505.07796).

    The validation loss during continual pre-training is the hidden pre-training curve (a power law in the
    forward area S1, lowered by the annealing area S2 — the LR-annealing law of arXiv:2408.11029) plus a
    distribution-shift term that grows (general-domain loss, B > 0) or falls (downstream loss, B < 0) with the
    forward area accumulated since CPT began, S1_cpt, and saturates.

    Formula:
        L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s) + B * (1 - (1 + E * S1_cpt(s))^(-beta))
        S1 = sum of learning rates so far (pre-training and CPT); S2 = momentum-form annealing area (lr_areas)
        B = 0  =>  the LR-annealing law L0 + A S1^-alpha - C S2

    Hyper-parameters:
        L0, A, alpha, C: 2.0, 0.5, 0.5, 0.3 — ours (illustrative); fitted per model and dataset in the paper.
        B, E, beta: 0.4, 0.5, 1.0 — ours (illustrative). The saturating power form of the shift term is our
            reading of the paper's summary (its exact equation was not readable here): verification is
            "reconstruction".
    """
    s1, s2, s1c = columns(x, ("s1", "s2", "s1_cpt"), "cpt_law")
    return L0 + A * np.clip(s1, 1e-12, None) ** (-alpha) - C * s2 + B * (1 - (1 + E * s1c) ** (-beta))
