"""Regenerate the figures of docs/scaling.md fitted on published data (half a minute): docs/img/loss_to_loss.png
(the loss-to-loss laws on the authors' runs, with the held-out 3.3B models) and docs/img/chinchilla_refit.png
(Chinchilla's law on the runs transcribed from its Figure 4: our Huber refit against the printed eq. 10):

PYTHONPATH=src python tools/plot_scaling_published.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from alignkit.scaling import fit, predict, read_runs, select  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"
DATA = Path(__file__).resolve().parents[1] / "shared" / "scaling"


def loss_to_loss_figure() -> None:
    runs = read_runs(DATA / "loss_to_loss.csv")
    pub = read_runs(DATA / "loss_to_loss_published.csv")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, kind in zip(axes, ("train-to-train", "train-to-test"), strict=True):
        for j, pair in enumerate(p for p, k in zip(pub["pair"], pub["kind"], strict=True) if k == kind):
            i = list(pub["pair"]).index(pair)
            sweep = select(runs, {"pair": pair, "split": "sweep"})
            held = select(runs, {"pair": pair, "split": "extrapolation"})
            r = fit("loss_to_loss", sweep, fix={"E0": pub["E0"][i], "E1": pub["E1"][i]}, n_boot=0)
            c = f"C{j}"
            label = f"{pair.split('->')[1]}: K {r.params['K']:.2f} ({pub['K'][i]:.2f}), "
            label += f"κ {r.params['kappa']:.2f} ({pub['kappa'][i]:.2f})"
            ax.scatter(sweep["loss_x"], sweep["loss_y"], s=6, color=c, alpha=0.5)
            xs = np.linspace(held["loss_x"][0], sweep["loss_x"].max(), 100)
            ax.plot(xs, r.predict({"loss_x": xs}), color=c, lw=1.2, label=label)
            ax.scatter(held["loss_x"], held["loss_y"], marker="*", s=90, color=c, edgecolor="black", lw=0.5)
        ax.set_xlabel("FineWeb-Edu validation loss (FineWeb-Edu model)")
        ax.set_ylabel("loss on data 1 (model trained on data 1)" if kind == "train-to-train" else "test loss")
        ax.set_title(f"{kind}: ours (paper); ★ = 3.3B model at 1e21 FLOPs, held out", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(OUT / "loss_to_loss.png", dpi=80)
    plt.close(fig)


def chinchilla_figure() -> None:
    d = select(read_runs(DATA / "chinchilla_fig4.csv"), {"excluded": 0})
    r = fit("chinchilla", d, huber=1e-3, n_boot=0)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True, layout="constrained")
    for ax, (name, pred) in zip(
        axes,
        (
            ("Hoffmann et al. eq. 10\n(printed)", predict("chinchilla", d)),
            ("refit here\n(Huber 1e-3, their procedure)", r.predict(d)),
        ),
        strict=True,
    ):
        rel = pred / d["loss"] - 1
        sc = ax.scatter(d["tokens"], rel, c=np.log10(d["params"]), s=8, cmap="viridis")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("training tokens")
        ax.set_title(f"{name}: mean |log error| {np.abs(np.log1p(rel)).mean():.4f}", fontsize=9)
    axes[0].set_ylabel("predicted / observed loss − 1")
    fig.colorbar(sc, ax=axes, label="log10 parameters")
    fig.savefig(OUT / "chinchilla_refit.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    loss_to_loss_figure()
    chinchilla_figure()
