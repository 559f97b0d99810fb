"""Downstream (translation) scaling with pretraining data (Isik et al., arXiv:2402.04177)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from alignkit.scaling._law import columns, scaling_law

PAPER = "Scaling Laws for Downstream Task Performance in Machine Translation"


@scaling_law(
    name="downstream_log_law",
    paper=PAPER,
    arxiv="2402.04177",
    aliases=("bleu_log_law",),
    inputs=("pretrain_tokens",),
    target="bleu",
    bounds={"A": (1e-6, 1e6), "alpha": (1e-4, 2.0), "beta": (0.05, 10.0)},
    tags=("downstream", "translation"),
    verification="reconstruction",
)
def downstream_log_law(
    x: Mapping[str, Any], *, A: float = 1.0, alpha: float = 0.1, beta: float = 1.5
) -> np.ndarray:
    """Scaling Laws for Downstream Task Performance in Machine Translation (arXiv:2402.04177).

    With pretraining data aligned with the downstream task, the translation score (BLEU, COMET) after
    fine-tuning grows with the pretraining set size D_p as a "log-law"; with misaligned pretraining data the
    score can fluctuate or fall while the downstream cross-entropy (``downstream_ce_law``) still falls.

    Formula:
        f(D_p) = (log(A * D_p^alpha))^beta      (one fit per fine-tuning set size D_f)
        beta = 1  =>  f = log A + alpha * log D_p

    Hyper-parameters:
        A: 1.0 — ours (illustrative); the paper fits per (task, D_f) and shows the curves in its Fig. 9.
        alpha: 0.1 — ours (illustrative).
        beta: 1.5 — ours (illustrative).
    """
    (d,) = columns(x, ("pretrain_tokens",), "downstream_log_law")
    inner = np.clip(np.log(A) + alpha * np.log(d), 1e-12, None)
    return inner**beta


@scaling_law(
    name="downstream_ce_law",
    paper=PAPER,
    arxiv="2402.04177",
    inputs=("pretrain_tokens",),
    target="downstream_ce",
    bounds={"E": (0.0, 20.0), "A": (1e-6, 1e8), "alpha": (1e-4, 2.0)},
    tags=("downstream", "translation"),
    verification="reconstruction",
)
def downstream_ce_law(
    x: Mapping[str, Any], *, E: float = 1.0, A: float = 10.0, alpha: float = 0.1
) -> np.ndarray:
    """Scaling Laws for Downstream Task Performance in Machine Translation (arXiv:2402.04177).

    The downstream cross-entropy after fine-tuning falls with the pretraining set size as a power law plus an
    irreducible term — monotonically, even where the translation score does not.

    Formula:
        L(D_p) = E + A / D_p^alpha

    Hyper-parameters:
        E: 1.0 — ours (illustrative); the paper fits per (task, D_f).
        A: 10.0 — ours (illustrative).
        alpha: 0.1 — ours (illustrative).
    """
    (d,) = columns(x, ("pretrain_tokens",), "downstream_ce_law")
    return E + A / d**alpha
