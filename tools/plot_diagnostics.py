"""Regenerate the figures of docs/diagnostics.md (a minute on a laptop CPU):

PYTHONPATH=src python tools/plot_diagnostics.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from alignkit.diagnostics.class_imbalance import loss_by_frequency, zipf_classification  # noqa: E402
from alignkit.diagnostics.neuron_alignment import (  # noqa: E402
    orthogonally_separable_data,
    predicted_fit_time,
    simulate_two_layer,
)

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"


def neuron_alignment_figure() -> None:
    X, y = orthogonally_separable_data()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for eps, color in ((1e-3, "C0"), (1e-6, "C1")):
        pred = predicted_fit_time(X, y, eps, 0.2)
        r = simulate_two_layer(X, y, init_scale=eps, lr=0.2, steps=int(1.5 * pred), record_every=5)
        ax[0].plot(r["steps"], r["alignment"], color=color, label=f"init {eps:g}")
        ax[1].plot(r["steps"], np.array(r["loss"]) / r["loss"][0], color=color, label=f"init {eps:g}")
        ax[1].axvline(pred, color=color, ls=":", lw=1)
    ax[0].set(xlabel="GD step", ylabel="mean cos(w_j, x_sign(v_j))", title="neurons align early")
    ax[1].set(xlabel="GD step", ylabel="loss / initial", title="loss halves at log(1/eps)/(lr r) (dotted)")
    for a in ax:
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "neuron_alignment.png", dpi=110)


def imbalance_figure() -> None:
    x, y, counts = zipf_classification(3000, 200, 20, exponent=1.0, seed=0)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for a, (name, lr) in zip(ax, (("GD", 0.5), ("Adam", 0.05)), strict=True):
        W = torch.zeros(20, 200, requires_grad=True)
        opt = torch.optim.SGD([W], lr=lr) if name == "GD" else torch.optim.Adam([W], lr=lr)
        curves = []
        for _ in range(150):
            curves.append(loss_by_frequency(x @ W.detach(), y, counts, n_groups=4)["loss_per_group"].numpy())
            loss = torch.nn.functional.cross_entropy(x @ W, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        c = np.array(curves)
        for g in range(4):
            a.plot(c[:, g], label=f"group {g}" + {0: " (frequent)", 3: " (rare)"}.get(g, ""))
        a.set(title=f"{name}: loss per frequency group", xlabel="step")
    ax[0].set_ylabel("train loss")
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "class_imbalance.png", dpi=110)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    neuron_alignment_figure()
    imbalance_figure()
