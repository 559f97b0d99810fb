"""LLMs on the Line (Mayilvahanan et al., arXiv:2502.12120): loss-to-loss lines are set by the pretraining data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from alignkit.scaling._law import columns, scaling_law
from alignkit.scaling.loss_to_loss import BOUNDS, shifted_power_law

PAPER = "LLMs on the Line: Data Determines Loss-to-Loss Scaling Laws"


@scaling_law(
    name="llms_on_the_line",
    paper=PAPER,
    arxiv="2502.12120",
    aliases=("llm_line",),
    inputs=("loss_x",),
    target="loss_y",
    bounds=BOUNDS,
    tags=("loss-to-loss", "group-by-pretraining-data"),
    verification="reconstruction",
)
def llms_on_the_line(
    x: Mapping[str, Any], *, K: float = 1.0, kappa: float = 1.0, E0: float = 0.0, E1: float = 0.0
) -> np.ndarray:
    """LLMs on the Line: Data Determines Loss-to-Loss Scaling Laws (arXiv:2502.12120).

    The same shifted power law as loss-to-loss prediction (arXiv:2411.12925), fitted once per group of models;
    the finding is that models sharing pretraining data (and tokenizer) fall on one curve whatever their
    architecture, size or optimiser. Use ``alignkit scaling fit --law llms_on_the_line --group-by COLUMN`` to fit
    one curve per group and compare the coefficients (:func:`alignkit.scaling.fit_groups`).

    Formula:
        loss_y = K * (loss_x - E_x)^kappa + E_y      (one (K, kappa, E_x, E_y) per pretraining-data group)

    Hyper-parameters:
        K: 1.0 — ours (identity map); the paper fits per group.
        kappa: 1.0 — ours.
        E0: 0.0 — ours (E_x).
        E1: 0.0 — ours (E_y).
    """
    (lx,) = columns(x, ("loss_x",), "llms_on_the_line")
    return shifted_power_law(lx, K, kappa, E0, E1)
